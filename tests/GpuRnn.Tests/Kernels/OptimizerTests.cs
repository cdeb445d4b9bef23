using GpuRnn.Kernels;
using GpuRnn.Tests.Reference;
using NUnit.Framework;

namespace GpuRnn.Tests.Kernels;

[TestFixtureSource(typeof(TestDevices), nameof(TestDevices.Specs))]
public sealed class OptimizerTests(string spec) : DeviceFixture(spec)
{
    private const int V = 5, H = 3, L = 2;

    private static IEnumerable<TestCaseData> Cases()
    {
        foreach (var kind in Enum.GetValues<OptimizerKind>())
        {
            yield return new TestCaseData(kind, 0f, 0f, 0f);
            yield return new TestCaseData(kind, 0f, 0.5f, 0f);  // clip by norm (active: the norm is ~4)
            yield return new TestCaseData(kind, 0f, 100f, 0f);  // clip by norm (inactive)
            yield return new TestCaseData(kind, 0f, 0f, 0.3f);  // clip by value
        }
        yield return new TestCaseData(OptimizerKind.Sgd, 0.9f, 0f, 0f);
        yield return new TestCaseData(OptimizerKind.Sgd, 0.9f, 0.5f, 0f);
    }

    /// <summary>
    /// Three updates with fresh gradients against the torch-exact reference. Each update rounds p, the
    /// slots and the step a handful of times (≤ 16u relative); the clip coefficient depends on the
    /// squared norm, a sum of P terms ((P + 4)·u relative), which scales the whole step.
    /// </summary>
    [TestCaseSource(nameof(Cases))]
    public void MatchesTorchSemantics(OptimizerKind kind, float momentum, float clipNorm, float clipValue)
    {
        const float lr = 0.05f;
        var settings = new OptimizerSettings(kind, lr, momentum, clipNorm, clipValue);
        var layout = new ParameterLayout(V, H, L);
        int n = (int)layout.Count;
        var rng = new Random((int)kind * 10 + (int)(clipNorm * 3 + clipValue * 7));
        var p0 = TestData.Uniform(rng, n);

        var reference = new RefModel(V, H, L);
        Unflatten(layout, p0, reference.Params);
        var refOpt = new RefOptimizer((RefOptimizerKind)(int)kind, lr, settings.Momentum);

        var p = Put(p0);
        var g = Put(new float[n]);
        var slots = Enumerable.Range(0, 2).Select(_ => Put(new float[n])).ToArray();
        var scalars = Put(new float[2]);
        double maxStep = 0;
        for (int step = 1; step <= 3; step++)
        {
            var grad = TestData.Uniform(rng, n);
            K.Upload<float>(grad, g);
            var refGrads = new Dictionary<string, double[]>();
            foreach (var t in layout.Tensors)
                refGrads[t.Name] = new double[t.Length];
            Unflatten(layout, grad, refGrads);
            if (clipNorm > 0)
            {
                RefClip.ClipGradNorm(refGrads, clipNorm);
                K.ReduceSum(n, true, g, scalars, 1);
            }
            if (clipValue > 0)
                RefClip.ClipGradValue(refGrads, clipValue);
            var before = Flatten(layout, reference.Params);
            refOpt.Step(reference, refGrads);
            var after = Flatten(layout, reference.Params);
            maxStep = Math.Max(maxStep, after.Zip(before, (a, b) => Math.Abs(a - b)).Max());

            var args = settings.ArgsForStep(step);
            switch (kind)
            {
                case OptimizerKind.Sgd: K.Sgd(args, p, g, slots[0], scalars, 1); break;
                case OptimizerKind.Adagrad: K.Adagrad(args, p, g, slots[0], scalars, 1); break;
                case OptimizerKind.RmsProp: K.RmsProp(args, p, g, slots[0], scalars, 1); break;
                case OptimizerKind.Adam: K.Adam(args, p, g, slots[0], slots[1], scalars, 1); break;
                default: throw new ArgumentOutOfRangeException(nameof(kind));
            }
            var expected = Flatten(layout, reference.Params);
            AssertClose(Get(p), expected, i => step * (16 * U * Math.Abs(expected[i]) + (n + 16) * U * maxStep), $"{kind} step {step}");
        }
    }

    private static void Unflatten(ParameterLayout layout, float[] flat, Dictionary<string, double[]> into)
    {
        foreach (var t in layout.Tensors)
        {
            for (long i = 0; i < t.Length; i++)
                into[t.Name][i] = flat[t.Offset + i];
        }
    }

    private static double[] Flatten(ParameterLayout layout, Dictionary<string, double[]> tensors)
    {
        var flat = new double[layout.Count];
        foreach (var t in layout.Tensors)
            tensors[t.Name].CopyTo(flat, t.Offset);
        return flat;
    }
}
