using GpuRnn.Kernels;
using ILGPU;
using ILGPU.Runtime;
using NUnit.Framework;

namespace GpuRnn.Tests.Kernels;

/// <summary>
/// Every tiling sums each inner product in the same order (p = 0, 1, …, K − 1 from 0), so on the CPU
/// accelerator, where nothing fuses multiply and add, the register-tiled shared-memory path ("cpu+tiles")
/// and the plain K loop ("cpu") must agree to the last bit, for the GEMM and both fused recurrent epilogues.
/// </summary>
public sealed class GemmTilingTests
{
    private static readonly (int M, int N, int K)[] Shapes = [(9, 10, 13), (31, 6, 9), (65, 33, 17), (3, 17, 65), (16, 16, 8), (2, 7, 1)];

    private static IEnumerable<TestCaseData> Cases() =>
        Shapes.SelectMany(s => new[] { (false, false), (true, false), (false, true), (true, true) }
            .Select(t => new TestCaseData(s.M, s.N, s.K, t.Item1, t.Item2)));

    [TestCaseSource(nameof(Cases))]
    public void GemmIsBitIdenticalAcrossTilings(int m, int n, int k, bool transA, bool transB)
    {
        var rng = new Random(m * 7919 + n * 31 + k);
        var a = TestData.Uniform(rng, (long)m * k);
        var b = TestData.Uniform(rng, (long)k * n);
        var c = TestData.Uniform(rng, (long)m * n);
        var bias = TestData.Uniform(rng, n);
        var s = new GemmShape(m, n, k, transA, transB);
        float[] Run(GpuDevice d, bool withBias) => OnDevice(d, [a, b, c, bias], v =>
        {
            if (withBias)
                d.Kernels.GemmBias(s, v[0], v[1], v[2], v[3]);
            else
                d.Kernels.Gemm(s, -0.75f, v[0], v[1], 1.5f, v[2]);
            return v[2];
        });
        foreach (bool withBias in new[] { false, true })
            Assert.That(Run(Tiled, withBias), Is.EqualTo(Run(Plain, withBias)).AsCollection, $"bias={withBias}");
    }

    /// <summary>A batched GEMM (grid z) sums in the same order on both paths, and each product equals its own unbatched GEMM bit for bit.</summary>
    [TestCase(9, 10, 13, 3)]
    [TestCase(17, 3, 33, 2)]
    [TestCase(1, 65, 5, 4)]
    public void BatchedGemmIsBitIdenticalAcrossTilingsAndToOneAtATime(int m, int n, int k, int batch)
    {
        var rng = new Random(m * 31 + n * 7 + k + batch);
        var a = TestData.Uniform(rng, (long)m * batch * k);   // [M, batch, K]: interleaved, as a time-major block
        var b = TestData.Uniform(rng, (long)batch * n * k);   // [batch, N, K]: B transposed, tight
        var c = new float[batch * m * n];                     // [batch, M, N]
        var s = new GemmShape(m, n, k, transA: false, transB: true).Strided(batch * k, k, n).Batched(batch, k, n * k, m * n);
        float[] Run(GpuDevice d) => OnDevice(d, [a, b, c], v =>
        {
            d.Kernels.Gemm(s, 1f, v[0], v[1], 0f, v[2]);
            return v[2];
        });
        var expected = Run(Plain);
        Assert.That(Run(Tiled), Is.EqualTo(expected).AsCollection, "shared-memory path");
        for (int z = 0; z < batch; z++)
        {
            var az = Enumerable.Range(0, m).SelectMany(i => a.AsSpan((i * batch + z) * k, k).ToArray()).ToArray();
            var bz = b.AsSpan(z * n * k, n * k).ToArray();
            var one = OnDevice(Plain, [az, bz, new float[m * n]], v =>
            {
                Plain.Kernels.Gemm(new GemmShape(m, n, k, transA: false, transB: true), 1f, v[0], v[1], 0f, v[2]);
                return v[2];
            });
            Assert.That(expected.AsSpan(z * m * n, m * n).ToArray(), Is.EqualTo(one).AsCollection, $"product {z}");
        }
    }

    /// <summary>The gate tiling sums in the same order too: it equals the plain GEMM bit for bit, on both paths.</summary>
    [TestCase(9, 17, 3)]
    [TestCase(5, 33, 4)]
    [TestCase(17, 3, 4)]
    [TestCase(1, 65, 3)]
    public void GateTilingIsBitIdenticalToTheGemm(int m, int hidden, int gates)
    {
        int n = gates * hidden;
        var rng = new Random(m * 31 + hidden + gates);
        var a = TestData.Uniform(rng, (long)m * hidden);
        var b = TestData.Uniform(rng, (long)n * hidden);
        var c = new float[m * n];
        var s = new GemmShape(m, n, hidden, transA: false, transB: true);
        float[] Run(GpuDevice d, bool gated) => OnDevice(d, [a, b, c], v =>
        {
            if (gated)
                d.Kernels.GemmGateTiled(s, hidden, v[0], v[1], v[2]);
            else
                d.Kernels.Gemm(s, 1f, v[0], v[1], 0f, v[2]);
            return v[2];
        });
        var expected = Run(Plain, false);
        Assert.That(Run(Plain, true), Is.EqualTo(expected).AsCollection, "plain path");
        Assert.That(Run(Tiled, true), Is.EqualTo(expected).AsCollection, "shared-memory path");
    }

    [TestCase(9, 18)]
    [TestCase(5, 33)]
    [TestCase(17, 3)]
    public void RecurrentStepsAreBitIdenticalAcrossTilings(int batch, int hidden)
    {
        var rng = new Random(batch * 100 + hidden);
        var hPrev = TestData.Uniform(rng, batch * hidden);
        var w = TestData.Uniform(rng, hidden * hidden, 1.0 / Math.Sqrt(hidden));
        var x = TestData.Uniform(rng, batch * hidden);
        var hv = TestData.Uniform(rng, batch * hidden, 0.99);
        var output = new float[batch * hidden];
        float[] Forward(GpuDevice d) => OnDevice(d, [hPrev, w, x, output], v =>
        {
            d.Kernels.CellForward(CellKind.Elman, batch, hidden, v[0], default, v[1], default, v[2], default, v[3], default);
            return v[3];
        });
        float[] Backward(GpuDevice d) => OnDevice(d, [hPrev, w, x, hv, output], v =>
        {
            d.Kernels.CellBackward(CellKind.Elman, batch, hidden, true, v[0], v[1], v[2], default, default, v[3], default, default, default, v[4], v[4], default);
            return v[4];
        });
        Assert.That(Forward(Tiled), Is.EqualTo(Forward(Plain)).AsCollection, "forward");
        Assert.That(Backward(Tiled), Is.EqualTo(Backward(Plain)).AsCollection, "backward");
    }

    private static GpuDevice Plain => TestDevices.Get("cpu");

    private static GpuDevice Tiled => TestDevices.Get(TestDevices.CpuTiled);

    /// <summary>Copies <paramref name="inputs"/> to <paramref name="device"/>, runs <paramref name="launch"/>, returns the view it names.</summary>
    private static float[] OnDevice(GpuDevice device, float[][] inputs, Func<ArrayView<float>[], ArrayView<float>> launch)
    {
        var buffers = inputs.Select(x => device.Accelerator.Allocate1D(x)).ToArray();
        try
        {
            var result = launch(buffers.Select(buf => (ArrayView<float>)buf.View).ToArray());
            return ((ArrayView1D<float, Stride1D.Dense>)result).GetAsArray1D();
        }
        finally
        {
            foreach (var buf in buffers.Reverse())
                buf.Dispose();
        }
    }
}
