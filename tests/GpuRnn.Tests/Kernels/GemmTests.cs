using GpuRnn.Kernels;
using GpuRnn.Tests.Reference;
using NUnit.Framework;

namespace GpuRnn.Tests.Kernels;

[TestFixtureSource(typeof(TestDevices), nameof(TestDevices.TiledSpecs))]
public sealed class GemmTests(string spec) : DeviceFixture(spec)
{
    /// <summary>
    /// Awkward shapes: 1, 3, 17, 33, 65 (none a tile multiple), non-square, M &lt; K, K &gt; tile count;
    /// (9, 10, 13) and (31, 6, 9) take the register-tiled path on "cpu+tiles" with partly filled 4×4
    /// register tiles and a last K slice shorter than the slice depth; (16, 16, 8) fills its tiles exactly.
    /// </summary>
    private static readonly (int M, int N, int K)[] Shapes =
    [
        (1, 1, 1), (3, 17, 65), (65, 33, 17), (17, 65, 3), (33, 1, 65), (1, 65, 33), (65, 65, 65), (5, 3, 200), (2, 7, 1),
        (9, 10, 13), (31, 6, 9), (16, 16, 8),
    ];

    private static IEnumerable<TestCaseData> Cases()
    {
        foreach (var (m, n, k) in Shapes)
        {
            foreach (bool ta in new[] { false, true })
            {
                foreach (bool tb in new[] { false, true })
                {
                    yield return new TestCaseData(m, n, k, ta, tb, 1f, 0f);
                    yield return new TestCaseData(m, n, k, ta, tb, -0.75f, 1.5f);
                }
            }
        }
    }

    /// <summary>
    /// float32 vs the double reference. A K-term dot product in float32 is off by at most
    /// (K + 3)·u·(|α|·Σ|a||b| + |β|·|c|) (K roundings in the sum, a few more for α, β and the add);
    /// the bound is computed per element from the absolute values, so it is tight and the test can fail.
    /// </summary>
    [TestCaseSource(nameof(Cases))]
    public void MatchesReference(int m, int n, int k, bool transA, bool transB, float alpha, float beta)
    {
        var rng = new Random(m * 1000 + n * 10 + k);
        var a = TestData.Uniform(rng, (long)m * k);
        var b = TestData.Uniform(rng, (long)k * n);
        var c = TestData.Uniform(rng, (long)m * n);
        var s = new GemmShape(m, n, k, transA, transB);
        var cView = beta == 0f ? Poisoned(m * n) : Put(c);
        K.Gemm(s, alpha, Put(a), Put(b), beta, cView);

        var expected = RefOps.Gemm(m, n, k, transA, transB, alpha, TestData.ToDouble(a), TestData.ToDouble(b), beta, TestData.ToDouble(c));
        var magnitude = RefOps.Gemm(m, n, k, transA, transB, Math.Abs(alpha), Abs(a), Abs(b), Math.Abs(beta), Abs(c));
        AssertClose(Get(cView), expected, i => (k + 3) * U * magnitude[i] + 1e-30, $"GEMM {m}x{n}x{k} tA={transA} tB={transB}");
    }

    /// <summary>
    /// The shapes above reach both tilings, and the register-tiled one with partial tiles along M, N
    /// and K, on every shared-memory device ("cpu+tiles" is the GPU path on the CPU accelerator).
    /// </summary>
    [Test]
    public void ShapesCoverBothTilingsAndPartialRegisterTiles()
    {
        if (Spec == TestDevices.CpuTiled)
            Assert.That(K.SharedTiles, Is.True, "cpu+tiles must run the shared-memory path");
        Assert.That(K.LargeTiling.Micro, Is.EqualTo(4));
        Assert.That(K.SmallTiling.Micro, Is.EqualTo(1));
        if (Spec != TestDevices.CpuTiled)
            return; // GPU tilings are sized for large outputs; the CPU run checks the coverage
        var large = Shapes.Where(s => K.TilingFor(s.M, s.N) == K.LargeTiling).ToArray();
        Assert.That(large, Is.Not.Empty, "register-tiled path");
        Assert.That(Shapes.Any(s => K.TilingFor(s.M, s.N) == K.SmallTiling), "one-output path");
        var t = K.LargeTiling;
        Assert.That(large.Any(s => s.M % t.BlockRows != 0 && s.N % t.BlockColumns != 0 && s.K % t.Depth != 0 && s.K > t.Depth), "partial register tiles and K slices");
        Assert.That(large.Any(s => s.M % t.BlockRows == 0 && s.N % t.BlockColumns == 0), "exact tiles");
    }

    /// <summary>
    /// Both biases broadcast over rows; bias2 only on the columns below bias2Columns (a GRU's hoisted input term
    /// takes b_hr and b_hz but not b_hn): 33 = all columns (the default), 22 = the first two of three gate
    /// blocks of H = 11, 0 = none.
    /// </summary>
    [TestCase(1, 33)]
    [TestCase(2, 33)]
    [TestCase(2, 22)]
    [TestCase(2, 0)]
    public void BiasesAreBroadcastOverRows(int biasCount, int bias2Columns)
    {
        const int m = 17, n = 33, k = 3;
        var rng = new Random(5);
        var a = TestData.Uniform(rng, m * k);
        var b = TestData.Uniform(rng, n * k);
        var bias1 = TestData.Uniform(rng, n);
        var bias2 = TestData.Uniform(rng, n);
        var c = Poisoned(m * n);
        var s = new GemmShape(m, n, k, false, true);
        if (biasCount == 2 && bias2Columns == n)
            K.GemmBias(s, Put(a), Put(b), c, Put(bias1), Put(bias2));
        else if (biasCount == 2)
            K.GemmBias(s, Put(a), Put(b), c, Put(bias1), Put(bias2), bias2Columns);
        else
            K.GemmBias(s, Put(a), Put(b), c, Put(bias1));

        var expected = RefOps.Gemm(m, n, k, false, true, 1, TestData.ToDouble(a), TestData.ToDouble(b), 0, new double[m * n]);
        var magnitude = RefOps.Gemm(m, n, k, false, true, 1, Abs(a), Abs(b), 0, new double[m * n]);
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                bool second = biasCount == 2 && j < bias2Columns;
                expected[i * n + j] += bias1[j] + (second ? bias2[j] : 0);
                magnitude[i * n + j] += Math.Abs(bias1[j]) + (second ? Math.Abs(bias2[j]) : 0);
            }
        }
        AssertClose(Get(c), expected, i => (k + 3) * U * magnitude[i], "GEMM + bias");
    }

    private static IEnumerable<TestCaseData> GateCases()
    {
        int[] sizes = [1, 3, 17, 33, 65];
        foreach (int m in sizes)
            foreach (int h in sizes)
                foreach (int g in new[] { 3, 4 })
                    foreach (bool transB in new[] { true, false })
                        yield return new TestCaseData(m, h, g, transB);
    }

    /// <summary>
    /// The gate tiling of the cells' forward step (register columns H apart, DESIGN.md §3a) computes the same
    /// [M, g·H] product as the plain one: C = A [M, K] · op(B), with B stored as W_hh [g·H, K] (transposed, K = H,
    /// the recurrent step) or [K, g·H] (K = 2H + 1); every element is written once (C starts as NaN), with the
    /// GEMM bound of <see cref="MatchesReference"/>.
    /// </summary>
    [TestCaseSource(nameof(GateCases))]
    public void GateTilingMatchesReference(int m, int hidden, int gates, bool transB)
    {
        int n = gates * hidden, k = transB ? hidden : 2 * hidden + 1;
        var rng = new Random(m * 1000 + hidden * 10 + gates);
        var a = TestData.Uniform(rng, (long)m * k);
        var b = TestData.Uniform(rng, (long)k * n);
        var s = new GemmShape(m, n, k, false, transB);
        var c = Poisoned(m * n);
        K.GemmGateTiled(s, hidden, Put(a), Put(b), c);

        var expected = RefOps.Gemm(m, n, k, false, transB, 1, TestData.ToDouble(a), TestData.ToDouble(b), 0, []);
        var magnitude = RefOps.Gemm(m, n, k, false, transB, 1, Abs(a), Abs(b), 0, []);
        AssertClose(Get(c), expected, i => (k + 3) * U * magnitude[i] + 1e-30, $"gate-tiled GEMM M={m} H={hidden} g={gates} tB={transB}");
    }

    private static IEnumerable<TestCaseData> BatchedCases()
    {
        (int M, int N, int K)[] shapes = [(1, 1, 1), (3, 17, 65), (17, 65, 3), (33, 1, 65), (9, 10, 13), (65, 33, 17)];
        foreach (var (m, n, k) in shapes)
            foreach (int batch in new[] { 1, 3 })
                foreach (bool interleaved in new[] { false, true })
                    foreach (var (ta, tb) in new[] { (false, false), (true, false), (false, true), (true, true) })
                        yield return new TestCaseData(m, n, k, ta, tb, batch, interleaved);
    }

    /// <summary>
    /// The batched GEMM (grid z = product) on two layouts per operand: <c>interleaved</c>, the time-major one of
    /// attention ([rows, B, width]: leading dimension B·width, batch stride width, read in place), and blocked
    /// with padded rows (leading dimension width + 2, batch stride rows·ld + 1). C starts as NaN; the elements no
    /// product covers (the padding) must stay NaN, every covered one gets the GEMM bound of <see cref="MatchesReference"/>.
    /// </summary>
    [TestCaseSource(nameof(BatchedCases))]
    public void BatchedMatchesReference(int m, int n, int k, bool transA, bool transB, int batch, bool interleaved)
    {
        var rng = new Random(m * 1000 + n * 10 + k + batch);
        (int Ld, int Stride, long Length) Layout(int rows, int width) =>
            interleaved ? (batch * width, width, (long)rows * batch * width) : (width + 2, rows * (width + 2) + 1, batch * ((long)rows * (width + 2) + 1));
        var la = Layout(transA ? k : m, transA ? m : k);
        var lb = Layout(transB ? n : k, transB ? k : n);
        var lc = Layout(m, n);
        var a = TestData.Uniform(rng, la.Length);
        var b = TestData.Uniform(rng, lb.Length);
        var c = TestData.Uniform(rng, lc.Length);
        var s = new GemmShape(m, n, k, transA, transB).Strided(la.Ld, lb.Ld, lc.Ld).Batched(batch, la.Stride, lb.Stride, lc.Stride);
        Assert.That((s.ALength, s.BLength, s.CLength), Is.EqualTo((la.Length - (interleaved ? 0 : 3), lb.Length - (interleaved ? 0 : 3), lc.Length - (interleaved ? 0 : 3))),
            "lengths end at the last product's last element");
        var cView = Put(c);
        K.Gemm(s, -0.75f, Put(a), Put(b), 1.5f, cView);
        var poisoned = Poisoned(lc.Length);
        K.Gemm(s, 1f, Put(a), Put(b), 0f, poisoned);

        var ld = (la.Ld, lb.Ld, lc.Ld);
        var stride = (la.Stride, lb.Stride, lc.Stride);
        var expected = RefOps.GemmBatched(m, n, k, transA, transB, -0.75, TestData.ToDouble(a), TestData.ToDouble(b), 1.5, TestData.ToDouble(c), batch, ld, stride);
        var magnitude = RefOps.GemmBatched(m, n, k, transA, transB, 0.75, Abs(a), Abs(b), 1.5, Abs(c), batch, ld, stride);
        AssertClose(Get(cView), expected, i => (k + 3) * U * magnitude[i] + 1e-30, $"batched GEMM {m}x{n}x{k}x{batch} tA={transA} tB={transB}");
        var covered = RefOps.GemmBatched(m, n, k, transA, transB, 1, TestData.ToDouble(a), TestData.ToDouble(b), 0, Enumerable.Repeat(double.NaN, (int)lc.Length).ToArray(), batch, ld, stride);
        var got = Get(poisoned);
        for (int i = 0; i < got.Length; i++)
            Assert.That(double.IsNaN(got[i]), Is.EqualTo(double.IsNaN(covered[i])), $"element {i}: written exactly where a product lies");
    }

    [Test]
    public void RejectsStridesNarrowerThanTheRows()
    {
        var s = new GemmShape(4, 4, 4, false, false).Strided(3, 4, 4);
        var ex = Assert.Throws<ArgumentException>(() => K.Gemm(s, 1f, Put(new float[16]), Put(new float[16]), 0f, Put(new float[16])));
        Assert.That(ex!.Message, Does.Contain("lda=3"));
    }

    [Test]
    public void ZeroInnerDimensionGivesBetaC()
    {
        var c = new float[] { 1, -2, 3 };
        var cView = Put(c);
        K.Gemm(new GemmShape(3, 1, 0, false, false), 2f, Put(new float[1]), Put(new float[1]), 0.5f, cView);
        Assert.That(Get(cView), Is.EqualTo(new[] { 0.5f, -1f, 1.5f }));
    }

    [Test]
    public void RejectsViewsTooSmallForTheShape()
    {
        var ex = Assert.Throws<ArgumentException>(() => K.Gemm(new GemmShape(4, 4, 4, false, false), 1f, Put(new float[15]), Put(new float[16]), 0f, Put(new float[16])));
        Assert.That(ex!.ParamName, Is.EqualTo("a"));
    }

    internal static double[] Abs(float[] x) => Array.ConvertAll(x, v => Math.Abs((double)v));
}
