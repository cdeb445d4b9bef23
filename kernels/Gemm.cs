using ILGPU;
using ILGPU.Runtime;

namespace GpuRnn.Kernels;

/// <summary>
/// Shape of one row-major GEMM <c>C = α·op(A)·op(B) + β·C</c>: op(A) is [M, K], op(B) is [K, N], C is [M, N].
/// A is stored [M, K] (or [K, M] when transposed), B is stored [K, N] (or [N, K] when transposed).
/// The flags are ints because kernel parameters must be blittable (bool is not).
/// </summary>
public readonly struct GemmShape
{
    /// <summary>The shape of <c>op(A)·op(B)</c> with op(A) [M, K] and op(B) [K, N].</summary>
    public GemmShape(int m, int n, int k, bool transA, bool transB)
    {
        M = m;
        N = n;
        K = k;
        TransposeA = transA ? 1 : 0;
        TransposeB = transB ? 1 : 0;
    }

    /// <summary>Rows of op(A) and C.</summary>
    public int M { get; }

    /// <summary>Columns of op(B) and C.</summary>
    public int N { get; }

    /// <summary>Inner dimension.</summary>
    public int K { get; }

    /// <summary>1 when A is stored transposed ([K, M]).</summary>
    public int TransposeA { get; }

    /// <summary>1 when B is stored transposed ([N, K]).</summary>
    public int TransposeB { get; }

    /// <summary>Leading dimension of A as stored.</summary>
    public int Lda => TransposeA != 0 ? M : K;

    /// <summary>Leading dimension of B as stored.</summary>
    public int Ldb => TransposeB != 0 ? K : N;

    /// <summary>Elements A must hold.</summary>
    public long ALength => (long)M * K;

    /// <summary>Elements B must hold.</summary>
    public long BLength => (long)K * N;

    /// <summary>Elements C must hold.</summary>
    public long CLength => (long)M * N;
}

public sealed partial class DeviceKernels
{
    /// <summary>
    /// The inner product (op(A)·op(B))[i, j] shared by every GEMM-shaped kernel. The group is a
    /// Tile×Tile square of threads; thread (x, y) owns C[i, j] with i = group row·Tile + y,
    /// j = group column·Tile + x. On a GPU each round stages a Tile×Tile block of op(A) and of op(B)
    /// in shared memory, so every element is read from global memory once per group instead of once
    /// per thread. The loop runs over K (not over M, the bug of ILGPU's MatrixMultiply sample).
    /// Every thread of the group must call this, in range or not, because of the barriers;
    /// out-of-range loads read as 0. When the launch requests no shared memory (the CPU accelerator,
    /// where each barrier is an OS-thread rendezvous and costs more than the arithmetic it saves)
    /// each thread runs the plain K loop instead: same order of summation, same result.
    /// </summary>
    internal static float TileDot(GemmShape s, ArrayView<float> a, ArrayView<float> b, int i, int j)
    {
        var shared = SharedMemory.GetDynamic<float>();
        if (shared.Length == 0)
            return DirectDot(s, a, b, i, j);
        int tile = Group.DimX;
        int tx = Group.IdxX;
        int ty = Group.IdxY;
        var aTile = shared.SubView(0, tile * tile);          // [Tile, Tile] block of op(A)
        var bTile = shared.SubView(tile * tile, tile * tile); // [Tile, Tile] block of op(B)
        int lda = s.Lda;
        int ldb = s.Ldb;
        float acc = 0f;
        for (int k0 = 0; k0 < s.K; k0 += tile)
        {
            int ka = k0 + tx; // column of op(A) this thread loads
            int kb = k0 + ty; // row of op(B) this thread loads
            float av = 0f;
            if (i < s.M && ka < s.K)
                av = s.TransposeA != 0 ? a[(long)ka * lda + i] : a[(long)i * lda + ka];
            float bv = 0f;
            if (j < s.N && kb < s.K)
                bv = s.TransposeB != 0 ? b[(long)j * ldb + kb] : b[(long)kb * ldb + j];
            aTile[ty * tile + tx] = av;
            bTile[ty * tile + tx] = bv;
            Group.Barrier();
            for (int p = 0; p < tile; p++)
                acc += aTile[ty * tile + p] * bTile[p * tile + tx];
            Group.Barrier();
        }
        return acc;
    }

    /// <summary>The plain K loop of <see cref="TileDot"/>, for launches without shared memory.</summary>
    private static float DirectDot(GemmShape s, ArrayView<float> a, ArrayView<float> b, int i, int j)
    {
        if (i >= s.M || j >= s.N)
            return 0f;
        int lda = s.Lda;
        int ldb = s.Ldb;
        float acc = 0f;
        for (int p = 0; p < s.K; p++)
        {
            float av = s.TransposeA != 0 ? a[(long)p * lda + i] : a[(long)i * lda + p];
            float bv = s.TransposeB != 0 ? b[(long)j * ldb + p] : b[(long)p * ldb + j];
            acc += av * bv;
        }
        return acc;
    }

    /// <summary>
    /// <c>C = α·op(A)·op(B) + β·C + bias1 + bias2</c>, the biases broadcast over rows ([N] each,
    /// used when <paramref name="biasCount"/> says so). β = 0 never reads C, so C may hold garbage.
    /// </summary>
    private static void GemmKernel(
        GemmShape s, float alpha, float beta, int biasCount,
        ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<float> bias1, ArrayView<float> bias2)
    {
        int j = Grid.IdxX * Group.DimX + Group.IdxX;
        int i = Grid.IdxY * Group.DimY + Group.IdxY;
        float acc = TileDot(s, a, b, i, j);
        if (i >= s.M || j >= s.N)
            return;
        long at = (long)i * s.N + j;
        float v = alpha * acc;
        if (beta != 0f)
            v += beta * c[at];
        if (biasCount > 0)
            v += bias1[j];
        if (biasCount > 1)
            v += bias2[j];
        c[at] = v;
    }

    private Action<KernelConfig, GemmShape, float, float, int, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> gemm = null!;

    private void LoadGemm() =>
        gemm = Accelerator.LoadStreamKernel<GemmShape, float, float, int, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(GemmKernel);

    /// <summary>Launch configuration covering an [M, N] output with Tile×Tile groups (shared-memory tiles only where <see cref="SharedTiles"/>).</summary>
    internal KernelConfig TileConfig(int m, int n) =>
        new(new Index2D(DivUp(Math.Max(n, 1), Tile), DivUp(Math.Max(m, 1), Tile)),
            new Index2D(Tile, Tile),
            SharedTiles ? SharedMemoryConfig.RequestDynamic<float>(2 * Tile * Tile) : SharedMemoryConfig.Empty);

    private static void RequireShape(GemmShape s)
    {
        Require(s.M > 0 && s.N > 0 && s.K >= 0, $"GEMM sizes must be positive (M={s.M}, N={s.N}, K={s.K}).");
    }

    /// <summary><c>C = α·op(A)·op(B) + β·C</c> for row-major dense views.</summary>
    public void Gemm(GemmShape s, float alpha, ArrayView<float> a, ArrayView<float> b, float beta, ArrayView<float> c)
    {
        RequireShape(s);
        RequireLength(a, s.ALength, nameof(a));
        RequireLength(b, s.BLength, nameof(b));
        RequireLength(c, s.CLength, nameof(c));
        Count();
        gemm(TileConfig(s.M, s.N), s, alpha, beta, 0, a, b, c, c, c);
    }

    /// <summary>
    /// <c>C = op(A)·op(B) + bias1 (+ bias2)</c>, biases [N] broadcast over the M rows; pass an
    /// invalid (default) <paramref name="bias2"/> for a single bias.
    /// </summary>
    public void GemmBias(GemmShape s, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias1, ArrayView<float> bias2 = default)
    {
        int biasCount = bias2.IsValid ? 2 : 1;
        if (!bias2.IsValid)
            bias2 = bias1;
        RequireShape(s);
        RequireLength(a, s.ALength, nameof(a));
        RequireLength(b, s.BLength, nameof(b));
        RequireLength(c, s.CLength, nameof(c));
        RequireLength(bias1, s.N, nameof(bias1));
        RequireLength(bias2, s.N, nameof(bias2));
        Count();
        gemm(TileConfig(s.M, s.N), s, 1f, 0f, biasCount, a, b, c, bias1, bias2);
    }
}
