using GpuRnn.Kernels;
using GpuRnn.Tests.Reference;
using NUnit.Framework;

namespace GpuRnn.Tests.Kernels;

[TestFixtureSource(typeof(TestDevices), nameof(TestDevices.TiledSpecs))]
public sealed class RecurrentTests(string spec) : DeviceFixture(spec)
{
    private static readonly (int B, int H)[] Shapes = [(1, 1), (3, 17), (17, 3), (5, 33), (2, 65), (9, 18)]; // (5, 33), (2, 65), (9, 18): register-tiled on cpu+tiles

    private static IEnumerable<TestCaseData> ForwardCases() => Shapes.Select(s => new TestCaseData(s.B, s.H));

    private static IEnumerable<TestCaseData> BackwardCases() =>
        Shapes.SelectMany(s => new[] { new TestCaseData(s.B, s.H, true), new TestCaseData(s.B, s.H, false) });

    /// <summary>
    /// h = tanh(hPrev·W_hhᵀ + x). The pre-activation carries the GEMM bound (H + 3)·u·Σ|·|; tanh has
    /// slope ≤ 1 and adds one rounding of |h| (plus the approximation error of tanh.approx on CUDA).
    /// </summary>
    [TestCaseSource(nameof(ForwardCases))]
    public void ForwardMatchesReference(int b, int h)
    {
        var rng = new Random(b * 100 + h);
        var hPrev = TestData.Uniform(rng, b * h);
        var w = TestData.Uniform(rng, h * h, 1.0 / Math.Sqrt(h));
        var x = TestData.Uniform(rng, b * h);
        var output = Poisoned(b * h);
        K.CellForward(CellKind.Elman, b, h, Put(hPrev), default, Put(w), default, Put(x), default, output, default);

        var z = RefOps.Gemm(b, h, h, false, true, 1, TestData.ToDouble(hPrev), TestData.ToDouble(w), 1, TestData.ToDouble(x));
        var mag = RefOps.Gemm(b, h, h, false, true, 1, GemmTests.Abs(hPrev), GemmTests.Abs(w), 1, GemmTests.Abs(x));
        var expected = z.Select(Math.Tanh).ToArray();
        double approx = TestDevices.TanhTolerance(Device);
        AssertClose(Get(output), expected, i => (h + 4) * U * mag[i] + U * Math.Abs(expected[i]) + approx, $"recurrent forward B={b} H={h}");
    }

    /// <summary>dz = (dH + dzNext·W_hh) ⊙ (1 − h²); with no next step the recurrent term is absent.</summary>
    [TestCaseSource(nameof(BackwardCases))]
    public void BackwardMatchesReference(int b, int h, bool hasNext)
    {
        var rng = new Random(b * 100 + h + (hasNext ? 7 : 0));
        var dzNext = TestData.Uniform(rng, b * h);
        var w = TestData.Uniform(rng, h * h, 1.0 / Math.Sqrt(h));
        var dH = TestData.Uniform(rng, b * h);
        var hv = TestData.Uniform(rng, b * h, 0.99);
        var dz = Poisoned(b * h);
        K.CellBackward(CellKind.Elman, b, h, hasNext, Put(dzNext), Put(w), Put(dH), default, default, Put(hv), default, default, default, dz, dz, default);

        var dzNextRef = hasNext ? TestData.ToDouble(dzNext) : new double[b * h];
        var sum = RefOps.Gemm(b, h, h, false, false, 1, dzNextRef, TestData.ToDouble(w), 1, TestData.ToDouble(dH));
        var mag = RefOps.Gemm(b, h, h, false, false, 1, hasNext ? GemmTests.Abs(dzNext) : new double[b * h], GemmTests.Abs(w), 1, GemmTests.Abs(dH));
        var expected = sum.Select((v, i) => v * (1 - (double)hv[i] * hv[i])).ToArray();
        // The GEMM bound, times |1 − h²| ≤ 1, plus the roundings of h², 1 − h² and the product.
        AssertClose(Get(dz), expected, i => (h + 7) * U * mag[i], $"recurrent backward B={b} H={h} next={hasNext}");
    }

    /// <summary>Past a sequence's end (length ≤ step) the state is held exactly and dz is 0; other rows are unchanged.</summary>
    [Test]
    public void EndedSequencesHoldTheirStateAndGetNoGradient()
    {
        const int b = 4, h = 5, step = 2;
        int[] lengths = [3, 2, 1, 5]; // rows 1 and 2 have ended at step 2
        var rng = new Random(3);
        var hPrev = TestData.Uniform(rng, b * h);
        var w = TestData.Uniform(rng, h * h, 0.4);
        var x = TestData.Uniform(rng, b * h);
        var plain = Poisoned(b * h);
        var held = Poisoned(b * h);
        K.CellForward(CellKind.Elman, b, h, Put(hPrev), default, Put(w), default, Put(x), default, plain, default);
        K.CellForward(CellKind.Elman, b, h, Put(hPrev), default, Put(w), default, Put(x), default, held, default, Put(lengths), step);
        var dzNext = TestData.Uniform(rng, b * h);
        var dH = TestData.Uniform(rng, b * h);
        var dzPlain = Poisoned(b * h);
        var dzHeld = Poisoned(b * h);
        K.CellBackward(CellKind.Elman, b, h, true, Put(dzNext), Put(w), Put(dH), default, default, Put(Get(plain)), default, default, default, dzPlain, dzPlain, default);
        K.CellBackward(CellKind.Elman, b, h, true, Put(dzNext), Put(w), Put(dH), default, default, Put(Get(plain)), default, default, default, dzHeld, dzHeld, default, Put(lengths), step);
        float[] hp = Get(plain), hh = Get(held), dp = Get(dzPlain), dh = Get(dzHeld);
        for (int row = 0; row < b; row++)
        {
            bool ended = lengths[row] <= step;
            for (int j = 0; j < h; j++)
            {
                int at = row * h + j;
                Assert.That(hh[at], Is.EqualTo(ended ? hPrev[at] : hp[at]), $"h row {row}");
                Assert.That(dh[at], Is.EqualTo(ended ? 0f : dp[at]), $"dz row {row}");
            }
        }
    }
}
