using GpuRnn.Tests.Reference;
using NUnit.Framework;

namespace GpuRnn.Tests.Kernels;

/// <summary>The attention kernels (kernels/Attention.cs) against the double reference.</summary>
[TestFixtureSource(typeof(TestDevices), nameof(TestDevices.Specs))]
public sealed class AttentionTests(string spec) : DeviceFixture(spec)
{
    /// <summary>
    /// Relative error of a softmax weight over n true positions: n terms summed in float32 plus a few roundings,
    /// times 4 for exp, which is accurate to a couple of ulps on every backend (as in SoftmaxCrossEntropyTests).
    /// </summary>
    private static double Rel(int n) => 4 * (n + 4) * U;

    /// <summary>
    /// Absolute error where exp underflows: below float32's smallest normal number, 2^-126, a weight loses its
    /// relative precision (subnormal) or is flushed to 0 (GPUs), so weights that small may be off by that much.
    /// </summary>
    private const double Underflow = 1.0 / (1L << 62) / (1L << 62) / 4;

    /// <summary>Rows R = T·B, B, S: awkward sizes, lengths from 1 to S, one row per decoder step (T = 1) included.</summary>
    private static IEnumerable<TestCaseData> Cases()
    {
        foreach (var (t, b, s) in new[] { (1, 1, 1), (3, 1, 17), (1, 3, 17), (17, 3, 33), (2, 5, 65), (5, 17, 3) })
            foreach (double spread in new[] { 3.0, 1000.0 })
                yield return new TestCaseData(t, b, s, spread);
    }

    private static int[] Lengths(Random rng, int batch, int columns) =>
        Enumerable.Range(0, batch).Select(i => i == 0 ? columns : i == 1 ? 1 : 1 + rng.Next(columns)).ToArray();

    /// <summary>
    /// Weights over the true source positions, exactly 0 over the padded ones, whose scores are NaN here so a
    /// kernel that reads them fails; scores ~ ±1000 overflow exp unless the row max is subtracted.
    /// </summary>
    [TestCaseSource(nameof(Cases))]
    public void MaskedSoftmaxMatchesReference(int steps, int batch, int columns, double spread)
    {
        var rng = new Random(steps * 100 + batch * 10 + columns);
        int rows = steps * batch;
        var lengths = Lengths(rng, batch, columns);
        var scores = TestData.Uniform(rng, rows * columns, spread);
        for (int r = 0; r < rows; r++)
            for (int j = lengths[r % batch]; j < columns; j++)
                scores[r * columns + j] = float.NaN;
        var weights = Poisoned(rows * columns);
        var lengthView = Put(lengths);
        K.MaskedSoftmaxForward(rows, batch, columns, lengthView, Put(scores), weights);
        var expected = RefOps.MaskedSoftmax(TestData.ToDouble(scores), rows, batch, columns, lengths);
        var a = Get(weights);
        AssertClose(a, expected, i => Rel(lengths[i / columns % batch]) * expected[i] + Underflow, "weights");
        Assert.That(Enumerable.Range(0, a.Length).Where(i => i % columns >= lengths[i / columns % batch]).All(i => a[i] == 0f), "padded positions get exactly 0");

        // Backward, in place into dWeights; padded dWeights are NaN and must not leak either.
        var dWeights = TestData.Uniform(rng, rows * columns);
        for (int r = 0; r < rows; r++)
            for (int j = lengths[r % batch]; j < columns; j++)
                dWeights[r * columns + j] = float.NaN;
        var dView = Put(dWeights);
        K.MaskedSoftmaxBackward(rows, batch, columns, lengthView, weights, dView, dView);
        var dScores = RefOps.MaskedSoftmaxBackward(TestData.ToDouble(a), TestData.ToDouble(dWeights), rows, batch, columns, lengths);
        // ds = a·(da − Σ a·da): the dot product's n roundings on Σ|a·da|, then two more, times |a|.
        var bound = new double[dScores.Length];
        for (int r = 0; r < rows; r++)
        {
            int n = lengths[r % batch];
            double dotMagnitude = Enumerable.Range(0, n).Sum(j => Math.Abs(a[r * columns + j] * dWeights[r * columns + j]));
            for (int j = 0; j < n; j++)
                bound[r * columns + j] = (n + 4) * U * a[r * columns + j] * (Math.Abs(dWeights[r * columns + j]) + dotMagnitude);
        }
        var ds = Get(dView);
        AssertClose(ds, dScores, i => bound[i] + Underflow, "dScores");
        Assert.That(Enumerable.Range(0, ds.Length).Where(i => i % columns >= lengths[i / columns % batch]).All(i => ds[i] == 0f), "padded positions get no gradient");
    }

    /// <summary>h̃ = tanh(x) in place, and dx = dy·(1 − h̃²); inputs include 0 and ±∞ (tanh(±∞) = ±1, gradient 0).</summary>
    [TestCase(1)]
    [TestCase(17)]
    [TestCase(65)]
    public void TanhMatchesReference(int n)
    {
        var rng = new Random(n);
        var x = TestData.Uniform(rng, n + 3, 4);
        x[^3] = 0f;
        x[^2] = float.PositiveInfinity;
        x[^1] = float.NegativeInfinity;
        var y = Put(x);
        K.TanhForward(x.Length, y);
        var expected = x.Select(v => Math.Tanh(v)).ToArray();
        // One rounding of a correctly computed tanh, plus the device's own tolerance for its tanh.
        AssertClose(Get(y), expected, i => 2 * U * Math.Abs(expected[i]) + TestDevices.TanhTolerance(Device), "tanh");
        var dy = TestData.Uniform(rng, x.Length);
        var yHost = Get(y);
        var dx = Poisoned(x.Length);
        K.TanhBackward(x.Length, y, Put(dy), dx);
        var dExpected = Enumerable.Range(0, x.Length).Select(i => dy[i] * (1 - (double)yHost[i] * yHost[i])).ToArray();
        AssertClose(Get(dx), dExpected, i => 3 * U * Math.Abs(dy[i]), "tanh backward");
    }

    [Test]
    public void RejectsRowsThatAreNotWholeSteps()
    {
        var ex = Assert.Throws<ArgumentException>(() => K.MaskedSoftmaxForward(5, 2, 3, Put(new[] { 1, 2 }), Put(new float[15]), Put(new float[15])));
        Assert.That(ex!.Message, Does.Contain("R=5, B=2"));
    }
}
