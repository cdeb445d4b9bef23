using GpuRnn.Kernels;
using NUnit.Framework;

namespace GpuRnn.Tests.Kernels;

/// <summary>
/// The additive (Bahdanau) attention kernels (kernels/AdditiveAttention.cs) against double loops written here from the
/// equations, on awkward sizes, with NaN in every padded source position of the keys and values (a kernel that reads
/// them fails). Each bound is the float32 error of the kernel's own sums (n terms: (n + 1)·u of the sum of their
/// magnitudes), propagated through the next sum, plus the device's tanh tolerance where a tanh is taken.
/// </summary>
[TestFixtureSource(typeof(TestDevices), nameof(TestDevices.Specs))]
public sealed class AdditiveAttentionTests(string spec) : DeviceFixture(spec)
{
    /// <summary>B, S, H (G = 3H, a GRU's input term): sizes 1, 3, 17, 33 with lengths from 1 to S.</summary>
    private static IEnumerable<TestCaseData> Cases() =>
        new[] { (1, 1, 1), (3, 17, 3), (1, 3, 17), (3, 33, 5), (5, 2, 33) }.Select(c => new TestCaseData(c.Item1, c.Item2, c.Item3));

    private static int[] Lengths(Random rng, int batch, int steps) =>
        Enumerable.Range(0, batch).Select(i => i == 0 ? steps : i == 1 ? 1 : 1 + rng.Next(steps)).ToArray();

    /// <summary>Rows j·B + b of a [S, B, width] block past each sequence's length set to NaN.</summary>
    private static float[] PaddedWithNaN(float[] x, int batch, int steps, int width, int[] lengths)
    {
        for (int j = 0; j < steps; j++)
            for (int b = 0; b < batch; b++)
                if (j >= lengths[b])
                    Array.Fill(x, float.NaN, (j * batch + b) * width, width);
        return x;
    }

    private double Tanh => TestDevices.TanhTolerance(Device);

    /// <summary>Error of 1 − tanh²(x) computed in float32 from float32 x: tanh's rounding (and the device's tolerance) doubled, one more rounding.</summary>
    private double SechError(double u) => 2 * Math.Abs(u) * (2 * U + Tanh) + 2 * U;

    [TestCaseSource(nameof(Cases))]
    public void ScoresAndInputMatchTheReference(int batch, int steps, int hidden)
    {
        var rng = new Random(batch * 1000 + steps * 10 + hidden);
        int gates = 3 * hidden;
        var n = new AdditiveSizes(batch, steps, hidden, gates);
        var lengths = Lengths(rng, batch, steps);
        var state = TestData.Uniform(rng, batch * hidden);
        var wq = TestData.Uniform(rng, hidden * hidden);
        var keys = PaddedWithNaN(TestData.Uniform(rng, steps * batch * hidden), batch, steps, hidden, lengths);
        var v = TestData.Uniform(rng, hidden, 2);
        var values = PaddedWithNaN(TestData.Uniform(rng, steps * batch * gates), batch, steps, gates, lengths);
        var x = TestData.Uniform(rng, batch * gates);
        var query = Poisoned(batch * hidden);
        var weights = Poisoned(batch * steps);
        var lengthView = Put(lengths);
        K.AdditiveScores(n, lengthView, Put(state), Put(wq), Put(keys), Put(v), query, weights);
        var xView = Put(x);
        K.AdditiveInput(n, lengthView, weights, Put(values), xView);

        var q = new double[batch * hidden];
        var qBound = new double[q.Length];
        var a = new double[batch * steps];
        var aBound = new double[a.Length];
        for (int b = 0; b < batch; b++)
        {
            for (int k = 0; k < hidden; k++)
            {
                q[b * hidden + k] = Enumerable.Range(0, hidden).Sum(i => (double)wq[k * hidden + i] * state[b * hidden + i]);
                qBound[b * hidden + k] = (hidden + 1) * U * Enumerable.Range(0, hidden).Sum(i => Math.Abs((double)wq[k * hidden + i] * state[b * hidden + i]));
            }
            int len = lengths[b];
            var e = new double[len];
            var eBound = new double[len];
            for (int j = 0; j < len; j++)
            {
                for (int k = 0; k < hidden; k++)
                {
                    double pre = q[b * hidden + k] + keys[(j * batch + b) * hidden + k];
                    double u = Math.Tanh(pre);
                    e[j] += v[k] * u;
                    eBound[j] += Math.Abs(v[k]) * (qBound[b * hidden + k] + 2 * U * Math.Abs(pre) + U * Math.Abs(u) + Tanh) + (hidden + 1) * U * Math.Abs(v[k] * u);
                }
            }
            double max = e.Max(), sum = e.Sum(s => Math.Exp(s - max)), worst = eBound.Max();
            for (int j = 0; j < len; j++)
            {
                a[b * steps + j] = Math.Exp(e[j] - max) / sum;
                aBound[b * steps + j] = a[b * steps + j] * (eBound[j] + worst + 4 * (len + 4) * U);
            }
        }
        AssertClose(Get(query), q, i => qBound[i], "query");
        var got = Get(weights);
        AssertClose(got, a, i => aBound[i], "weights");
        Assert.That(Enumerable.Range(0, got.Length).Where(i => i % steps >= lengths[i / steps]).All(i => got[i] == 0f), "padded positions get exactly 0");

        // The input, from the device's weights: x + Σ_j a_j V_j over the true positions.
        var xExpected = new double[batch * gates];
        var xBound = new double[xExpected.Length];
        for (int b = 0; b < batch; b++)
        {
            for (int g = 0; g < gates; g++)
            {
                var terms = Enumerable.Range(0, lengths[b]).Select(j => (double)got[b * steps + j] * values[(j * batch + b) * gates + g]).ToArray();
                xExpected[b * gates + g] = x[b * gates + g] + terms.Sum();
                xBound[b * gates + g] = (lengths[b] + 2) * U * (Math.Abs(x[b * gates + g]) + terms.Sum(Math.Abs));
            }
        }
        AssertClose(Get(xView), xExpected, i => xBound[i], "x");
    }

    [TestCaseSource(nameof(Cases))]
    public void StepBackwardMatchesTheReference(int batch, int steps, int hidden)
    {
        var rng = new Random(batch * 1000 + steps * 10 + hidden + 7);
        int gates = 3 * hidden;
        var n = new AdditiveSizes(batch, steps, hidden, gates);
        var lengths = Lengths(rng, batch, steps);
        var dx = TestData.Uniform(rng, batch * gates);
        var values = PaddedWithNaN(TestData.Uniform(rng, steps * batch * gates), batch, steps, gates, lengths);
        var weights = new float[batch * steps];
        for (int b = 0; b < batch; b++)
        {
            var raw = Enumerable.Range(0, lengths[b]).Select(_ => rng.NextDouble() + 0.1).ToArray();
            for (int j = 0; j < lengths[b]; j++)
                weights[b * steps + j] = (float)(raw[j] / raw.Sum());
        }
        var query = TestData.Uniform(rng, batch * hidden);
        var keys = PaddedWithNaN(TestData.Uniform(rng, steps * batch * hidden), batch, steps, hidden, lengths);
        var v = TestData.Uniform(rng, hidden, 2);
        var wq = TestData.Uniform(rng, hidden * hidden);
        var dState = TestData.Uniform(rng, batch * hidden);
        var dScores = Poisoned(batch * steps);
        var dQuery = Poisoned(batch * hidden);
        var dStateView = Put(dState);
        K.AdditiveStepBackward(n, Put(lengths), Put(dx), Put(values), Put(weights), Put(query), Put(keys), Put(v), Put(wq), dScores, dQuery, dStateView);

        var de = new double[batch * steps];
        var deBound = new double[de.Length];
        var dq = new double[batch * hidden];
        var dqBound = new double[dq.Length];
        var ds = new double[batch * hidden];
        var dsBound = new double[ds.Length];
        for (int b = 0; b < batch; b++)
        {
            int len = lengths[b];
            var da = new double[len];
            var daBound = new double[len];
            for (int j = 0; j < len; j++)
            {
                var terms = Enumerable.Range(0, gates).Select(g => (double)dx[b * gates + g] * values[(j * batch + b) * gates + g]).ToArray();
                da[j] = terms.Sum();
                daBound[j] = (gates + 1) * U * terms.Sum(Math.Abs);
            }
            double dot = Enumerable.Range(0, len).Sum(j => weights[b * steps + j] * da[j]);
            double dotBound = Enumerable.Range(0, len).Sum(j => weights[b * steps + j] * daBound[j]) + (len + 1) * U * Enumerable.Range(0, len).Sum(j => Math.Abs(weights[b * steps + j] * da[j]));
            for (int j = 0; j < len; j++)
            {
                double aj = weights[b * steps + j];
                de[b * steps + j] = aj * (da[j] - dot);
                deBound[b * steps + j] = aj * (daBound[j] + dotBound + 2 * U * (Math.Abs(da[j]) + Math.Abs(dot)));
            }
            for (int k = 0; k < hidden; k++)
            {
                double sum = 0, magnitude = 0, propagated = 0;
                for (int j = 0; j < len; j++)
                {
                    double u = Math.Tanh(query[b * hidden + k] + keys[(j * batch + b) * hidden + k]);
                    double sech = 1 - u * u, dej = de[b * steps + j];
                    sum += dej * sech;
                    magnitude += Math.Abs(dej * sech);
                    propagated += deBound[b * steps + j] * sech + Math.Abs(dej) * SechError(u);
                }
                dq[b * hidden + k] = v[k] * sum;
                dqBound[b * hidden + k] = Math.Abs(v[k]) * (propagated + (len + 2) * U * magnitude);
            }
            for (int i = 0; i < hidden; i++)
            {
                var terms = Enumerable.Range(0, hidden).Select(k => (double)wq[k * hidden + i] * dq[b * hidden + k]).ToArray();
                ds[b * hidden + i] = dState[b * hidden + i] + terms.Sum();
                dsBound[b * hidden + i] = Enumerable.Range(0, hidden).Sum(k => Math.Abs(wq[k * hidden + i]) * dqBound[b * hidden + k])
                    + (hidden + 2) * U * (Math.Abs(dState[b * hidden + i]) + terms.Sum(Math.Abs));
            }
        }
        var gotDe = Get(dScores);
        AssertClose(gotDe, de, i => deBound[i], "dScores");
        Assert.That(Enumerable.Range(0, gotDe.Length).Where(i => i % steps >= lengths[i / steps]).All(i => gotDe[i] == 0f), "padded positions get no gradient");
        AssertClose(Get(dQuery), dq, i => dqBound[i], "dQuery");
        AssertClose(Get(dStateView), ds, i => dsBound[i], "dState");
    }

    [TestCaseSource(nameof(Cases))]
    public void KeysBackwardMatchesTheReference(int batch, int steps, int hidden)
    {
        var rng = new Random(batch * 1000 + steps * 10 + hidden + 13);
        const int decoderSteps = 3;
        var n = new AdditiveSizes(batch, steps, hidden, 3 * hidden);
        var lengths = Lengths(rng, batch, steps);
        var dScores = TestData.Uniform(rng, decoderSteps * batch * steps);
        for (int r = 0; r < decoderSteps * batch; r++)
            for (int j = lengths[r % batch]; j < steps; j++)
                dScores[r * steps + j] = float.NaN; // the step backward writes 0 there; NaN checks they are not read
        var query = TestData.Uniform(rng, decoderSteps * batch * hidden);
        var keys = PaddedWithNaN(TestData.Uniform(rng, steps * batch * hidden), batch, steps, hidden, lengths);
        var v = TestData.Uniform(rng, hidden, 2);
        var dKeys = Poisoned(steps * batch * hidden);
        var dv = Poisoned(hidden);
        K.AdditiveKeysBackward(n, decoderSteps, Put(lengths), Put(dScores), Put(query), Put(keys), Put(v), dKeys, dv);

        var dk = new double[steps * batch * hidden];
        var dkBound = new double[dk.Length];
        var dvExpected = new double[hidden];
        var dvBound = new double[hidden];
        var dvMagnitude = new double[hidden];
        int terms = 0;
        for (int b = 0; b < batch; b++)
        {
            for (int j = 0; j < lengths[b]; j++)
            {
                terms += decoderSteps;
                for (int k = 0; k < hidden; k++)
                {
                    int at = (j * batch + b) * hidden + k;
                    double sum = 0, magnitude = 0, propagated = 0;
                    for (int t = 0; t < decoderSteps; t++)
                    {
                        int r = t * batch + b;
                        double u = Math.Tanh(query[r * hidden + k] + keys[at]), de = dScores[r * steps + j];
                        sum += de * (1 - u * u);
                        magnitude += Math.Abs(de * (1 - u * u));
                        propagated += Math.Abs(de) * SechError(u);
                        dvExpected[k] += de * u;
                        dvMagnitude[k] += Math.Abs(de * u);
                        dvBound[k] += Math.Abs(de) * (2 * U * Math.Abs(u) + Tanh);
                    }
                    dk[at] = v[k] * sum;
                    dkBound[at] = Math.Abs(v[k]) * (propagated + (decoderSteps + 2) * U * magnitude);
                }
            }
        }
        var gotKeys = Get(dKeys);
        AssertClose(gotKeys, dk, i => dkBound[i], "dKeys");
        Assert.That(Enumerable.Range(0, gotKeys.Length).Where(i => i / hidden / batch >= lengths[i / hidden % batch]).All(i => gotKeys[i] == 0f), "padded keys get no gradient");
        AssertClose(Get(dv), dvExpected, k => dvBound[k] + (terms + 1) * U * dvMagnitude[k], "dv");
    }

    [Test]
    public void RejectsAViewTooShort()
    {
        var n = new AdditiveSizes(2, 3, 4, 12);
        var ex = Assert.Throws<ArgumentException>(() => K.AdditiveInput(n, Put(new[] { 3, 1 }), Put(new float[6]), Put(new float[72]), Put(new float[23])));
        Assert.That(ex!.Message, Does.Contain("x"));
    }
}
