using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;

// The CPU accelerator builds each kernel's launcher in a dynamic assembly of this name; it must see
// the internal epilogue structs that are kernel parameters (see IGemmEpilogue).
[assembly: InternalsVisibleTo("ILGPURuntime")]

namespace GpuRnn.Kernels;

/// <summary>
/// Shape of one row-major GEMM <c>C = α·op(A)·op(B) + β·C</c>: op(A) is [M, K], op(B) is [K, N], C is [M, N].
/// A is stored [M, K] (or [K, M] when transposed), B is stored [K, N] (or [N, K] when transposed), each row
/// of a stored matrix <see cref="Lda"/>, <see cref="Ldb"/>, <see cref="Ldc"/> elements after the last (tight
/// unless <see cref="Strided"/> says otherwise). A batched GEMM (<see cref="Batched"/>) runs
/// <see cref="Batch"/> such products in one launch, product z reading A, B and C from z·stride onwards, so a
/// time-major [T, B, H] block is B matrices [T, H] with leading dimension B·H and batch stride H, read in place.
/// The flags are ints because kernel parameters must be blittable (bool is not).
/// </summary>
public readonly struct GemmShape
{
    /// <summary>The shape of <c>op(A)·op(B)</c> with op(A) [M, K] and op(B) [K, N], tightly stored, one product.</summary>
    public GemmShape(int m, int n, int k, bool transA, bool transB)
        : this(m, n, k, (transA ? 1 : 0) | (transB ? 2 : 0), transA ? m : k, transB ? k : n, n, 1, 0, 0, 0)
    {
    }

    // Every field is an int and none is derived: the CPU accelerator copies a kernel's arguments into an object per
    // launch (TrainerTests.CpuBytesPerLaunch), so the shape stays as small as the batched GEMM allows.
    private GemmShape(int m, int n, int k, int flags, int lda, int ldb, int ldc, int batch, int strideA, int strideB, int strideC)
    {
        M = m;
        N = n;
        K = k;
        Flags = flags;
        Lda = lda;
        Ldb = ldb;
        Ldc = ldc;
        Batch = batch;
        StrideA = strideA;
        StrideB = strideB;
        StrideC = strideC;
    }

    /// <summary>Rows of op(A) and C.</summary>
    public int M { get; }

    /// <summary>Columns of op(B) and C.</summary>
    public int N { get; }

    /// <summary>Inner dimension.</summary>
    public int K { get; }

    /// <summary>Bit 0: A is stored transposed; bit 1: B is.</summary>
    private int Flags { get; }

    /// <summary>1 when A is stored transposed ([K, M]).</summary>
    public int TransposeA => Flags & 1;

    /// <summary>1 when B is stored transposed ([N, K]).</summary>
    public int TransposeB => (Flags >> 1) & 1;

    /// <summary>Elements from one stored row of A to the next (K, or M when transposed, unless strided).</summary>
    public int Lda { get; }

    /// <summary>Elements from one stored row of B to the next (N, or K when transposed, unless strided).</summary>
    public int Ldb { get; }

    /// <summary>Elements from one row of C to the next (N unless strided).</summary>
    public int Ldc { get; }

    /// <summary>Products in one launch (1 unless <see cref="Batched"/>).</summary>
    public int Batch { get; }

    /// <summary>Elements from one product's A to the next.</summary>
    public int StrideA { get; }

    /// <summary>Elements from one product's B to the next.</summary>
    public int StrideB { get; }

    /// <summary>Elements from one product's C to the next.</summary>
    public int StrideC { get; }

    /// <summary>This shape with the stored rows of A, B and C the given elements apart (each at least the stored row's width).</summary>
    public GemmShape Strided(int lda, int ldb, int ldc) => new(M, N, K, Flags, lda, ldb, ldc, Batch, StrideA, StrideB, StrideC);

    /// <summary>This shape run <paramref name="batch"/> times in one launch, product z at z·stride in each of A, B and C.</summary>
    public GemmShape Batched(int batch, int strideA, int strideB, int strideC) => new(M, N, K, Flags, Lda, Ldb, Ldc, batch, strideA, strideB, strideC);

    /// <summary>Elements A must hold: up to the last element of the last product.</summary>
    public long ALength => Extent(TransposeA != 0 ? K : M, TransposeA != 0 ? M : K, Lda, StrideA);

    /// <summary>Elements B must hold.</summary>
    public long BLength => Extent(TransposeB != 0 ? N : K, TransposeB != 0 ? K : N, Ldb, StrideB);

    /// <summary>Elements C must hold.</summary>
    public long CLength => Extent(M, N, Ldc, StrideC);

    /// <summary>True when no stored row is narrower than its matrix and the counts are positive.</summary>
    internal bool Consistent =>
        Lda >= (TransposeA != 0 ? M : K) && Ldb >= (TransposeB != 0 ? K : N) && Ldc >= N && Batch >= 1 && StrideA >= 0 && StrideB >= 0 && StrideC >= 0;

    private long Extent(int rows, int columns, int ld, int stride) =>
        rows == 0 || columns == 0 ? 0 : (Batch - 1L) * stride + (long)(rows - 1) * ld + columns;

    // On the device the product is the grid's z index (GemmTiledKernel launches one z per product; 0 for one product).

    /// <summary>op(A)[i, p] of this thread's product, for i &lt; M and p &lt; K.</summary>
    internal float A(ArrayView<float> a, int i, int p) =>
        a[(long)Grid.IdxZ * StrideA + (TransposeA != 0 ? (long)p * Lda + i : (long)i * Lda + p)];

    /// <summary>op(B)[p, j] of this thread's product, for p &lt; K and j &lt; N.</summary>
    internal float B(ArrayView<float> b, int p, int j) =>
        b[(long)Grid.IdxZ * StrideB + (TransposeB != 0 ? (long)j * Ldb + p : (long)p * Ldb + j)];

    /// <summary>Where C[i, j] of this thread's product is stored.</summary>
    internal long C(int i, int j) => (long)Grid.IdxZ * StrideC + (long)i * Ldc + j;
}

/// <summary>
/// How one GEMM-shaped launch covers C: groups of ThreadsX × ThreadsY threads (the launch's group
/// size), each thread owning a Micro × Micro register tile (Micro is 1 or 4) of outputs strided by
/// the group size, so one group covers a [Micro·ThreadsY, Micro·ThreadsX] block of C (launched as a gate
/// tiling, its columns stand H apart instead: see GemmTiledKernel); with shared memory each round stages
/// Depth columns of op(A) and Depth rows of op(B) for that block.
/// </summary>
/// <param name="ThreadsX">Threads per group along N.</param>
/// <param name="ThreadsY">Threads per group along M.</param>
/// <param name="Micro">Outputs per thread along each of M and N: 1 or 4.</param>
/// <param name="Depth">K-slice staged per round (shared-memory launches only).</param>
public readonly record struct GemmTiling(int ThreadsX, int ThreadsY, int Micro, int Depth)
{
    /// <summary>Rows of C one group covers.</summary>
    public int BlockRows => Micro * ThreadsY;

    /// <summary>Columns of C one group covers.</summary>
    public int BlockColumns => Micro * ThreadsX;

    /// <summary>
    /// Floats of shared memory a group stages: [Depth, BlockRows + 1] of op(A)ᵀ and [Depth, BlockColumns + 1]
    /// of op(B); the extra column keeps a transposing store from hitting one memory bank with every thread.
    /// </summary>
    public int SharedFloats => Depth * (BlockRows + 1 + BlockColumns + 1);

    /// <summary>Groups needed for an [M, N] output.</summary>
    public long Groups(int m, int n) => (long)DivUp(m, BlockRows) * DivUp(n, BlockColumns);

    internal static int DivUp(int a, int b) => (Math.Max(a, 1) + b - 1) / b;
}

/// <summary>
/// What a GEMM-shaped kernel does with the finished inner products of one row of a thread's register
/// tile: <c>v_c = (op(A)·op(B))[i, j + c·stride]</c> for c &lt; count (count is the tiling's Micro, 1 or 4;
/// the other values are 0). Row i is inside C; the columns are not checked yet, since what lies
/// outside depends on the epilogue (an element-wise one skips columns ≥ N, a gated one reads all g gates
/// of unit j at stride H). Implemented by structs (their views are kernel parameters), so nothing is
/// virtual on the device. The epilogue of the plain GEMM lives here, those of the cells in Elman.cs,
/// Gru.cs and Lstm.cs.
/// </summary>
internal interface IGemmEpilogue
{
    /// <summary>Consumes row <paramref name="i"/> (&lt; M) of a register tile, columns j, j + stride, … (count of them).</summary>
    void ApplyRow(GemmShape s, int i, int j, int stride, int count, float v0, float v1, float v2, float v3);
}

/// <summary>An epilogue that treats each output (i, j) on its own; <see cref="GemmRows.Elementwise"/> hands it a row's values.</summary>
internal interface IGemmElementEpilogue
{
    /// <summary>Consumes the inner product <paramref name="dot"/> of output (i, j); i &lt; M and j &lt; N.</summary>
    void Apply(GemmShape s, int i, int j, float dot);
}

/// <summary>Helpers for epilogues.</summary>
internal static class GemmRows
{
    /// <summary>Hands each value of a register-tile row that lies inside C to an element-wise epilogue.</summary>
    public static void Elementwise<TElement>(TElement e, GemmShape s, int i, int j, int stride, int count, float v0, float v1, float v2, float v3)
        where TElement : struct, IGemmElementEpilogue
    {
        if (j < s.N)
            e.Apply(s, i, j, v0);
        if (count == 1)
            return;
        if (j + stride < s.N)
            e.Apply(s, i, j + stride, v1);
        if (j + 2 * stride < s.N)
            e.Apply(s, i, j + 2 * stride, v2);
        if (j + 3 * stride < s.N)
            e.Apply(s, i, j + 3 * stride, v3);
    }
}

/// <summary>
/// <c>C = α·dot + β·C + bias1 + bias2</c>; β = 0 never reads C; biases [N] broadcast over rows when counted,
/// bias2 only to columns &lt; bias2Columns (GRU: its b_hn is not folded into the hoisted input term).
/// </summary>
internal readonly struct GemmEpilogue(float alpha, float beta, int biasCount, int bias2Columns, ArrayView<float> c, ArrayView<float> bias1, ArrayView<float> bias2)
    : IGemmEpilogue, IGemmElementEpilogue
{
    private readonly float alpha = alpha;
    private readonly float beta = beta;
    private readonly int biasCount = biasCount;
    private readonly int bias2Columns = bias2Columns;
    private readonly ArrayView<float> c = c;
    private readonly ArrayView<float> bias1 = bias1;
    private readonly ArrayView<float> bias2 = bias2;

    public void ApplyRow(GemmShape s, int i, int j, int stride, int count, float v0, float v1, float v2, float v3) =>
        GemmRows.Elementwise(this, s, i, j, stride, count, v0, v1, v2, v3);

    public void Apply(GemmShape s, int i, int j, float dot)
    {
        long at = s.C(i, j);
        float v = alpha * dot;
        if (beta != 0f)
            v += beta * c[at];
        if (biasCount > 0)
            v += bias1[j];
        if (biasCount > 1 && j < bias2Columns)
            v += bias2[j];
        c[at] = v;
    }
}

public sealed partial class DeviceKernels
{
    /// <summary>
    /// The one GEMM-shaped kernel: every output (i, j) gets the inner product
    /// <c>Σ_p op(A)[i, p]·op(B)[p, j]</c>, summed in increasing p from 0 (the same order on every
    /// path, so the result does not depend on the tiling), then handed to <typeparamref name="TEpilogue"/>
    /// one register-tile row at a time.
    /// Thread (x, y) of group (gx, gy) owns rows <c>gy·BlockRows + y + r·ThreadsY</c> and columns
    /// <c>j0 + c·stride</c>, r, c &lt; micro, with <c>j0 = gx·pitch + x</c>. Plain tiling
    /// (<paramref name="gateStride"/> = 0): stride = ThreadsX and pitch = BlockColumns, so neighbouring
    /// threads read neighbouring shared-memory words and write neighbouring outputs. Gate tiling
    /// (<paramref name="gateStride"/> = H, for C = [B, g·H] with g ≤ micro, DESIGN.md §3a): stride = H and
    /// pitch = ThreadsX, so thread lane j0 = u &lt; H owns columns u, u + H, u + 2H, u + 3H — the g gate
    /// pre-activations of hidden unit u — and its epilogue sees all of them at once; lanes u ≥ H do nothing.
    /// A 4×4 register tile keeps 16 named accumulators (ILGPU does not unroll loops, so an array would live
    /// in local memory) and does 16 multiply-adds per 8 operand loads instead of 1 per 2.
    /// With shared memory (GPUs; the CPU accelerator only when forced) each round the whole group
    /// stages a [depth, BlockRows] slice of op(A)ᵀ and a [depth, BlockColumns] slice of op(B) (tile column
    /// <c>c·ThreadsX + x</c> holds C's column <c>gx·pitch + x + c·stride</c>), reading along each matrix's
    /// stored rows, then every thread runs its register tile over the slice; the rounds run over K (not
    /// over M, the bug of ILGPU's MatrixMultiply sample). Out-of-range elements stage as 0 and are never
    /// stored. Without shared memory (the CPU accelerator, where a barrier is an OS-thread rendezvous
    /// dearer than the arithmetic it saves) each thread runs the plain K loop over its register tile,
    /// with out-of-range rows and columns clamped (computed, never stored).
    /// </summary>
    private static void GemmTiledKernel<TEpilogue>(GemmShape s, int micro, int depth, int gateStride, ArrayView<float> a, ArrayView<float> b, TEpilogue epilogue)
        where TEpilogue : struct, IGemmEpilogue
    {
        int sx = Group.DimX, sy = Group.DimY;
        int blockRows = micro * sy, blockColumns = micro * sx;
        int stride = gateStride > 0 ? gateStride : sx, pitch = gateStride > 0 ? sx : blockColumns;
        int rowBase = Grid.IdxY * blockRows, columnBase = Grid.IdxX * pitch;
        int i0 = rowBase + Group.IdxY, j0 = columnBase + Group.IdxX;
        float c00 = 0f, c01 = 0f, c02 = 0f, c03 = 0f;
        float c10 = 0f, c11 = 0f, c12 = 0f, c13 = 0f;
        float c20 = 0f, c21 = 0f, c22 = 0f, c23 = 0f;
        float c30 = 0f, c31 = 0f, c32 = 0f, c33 = 0f;
        var shared = SharedMemory.GetDynamic<float>();
        if (shared.Length == 0)
        {
            // Plain K loop; clamped indices keep every load in range without a branch per load.
            int m1 = s.M - 1, n1 = s.N - 1;
            int i1 = Math.Min(i0, m1), j1 = Math.Min(j0, n1);
            if (micro == 1)
            {
                for (int p = 0; p < s.K; p++)
                    c00 += s.A(a, i1, p) * s.B(b, p, j1);
            }
            else
            {
                int i2 = Math.Min(i0 + sy, m1), i3 = Math.Min(i0 + 2 * sy, m1), i4 = Math.Min(i0 + 3 * sy, m1);
                int j2 = Math.Min(j0 + stride, n1), j3 = Math.Min(j0 + 2 * stride, n1), j4 = Math.Min(j0 + 3 * stride, n1);
                for (int p = 0; p < s.K; p++)
                {
                    float a0 = s.A(a, i1, p), a1 = s.A(a, i2, p), a2 = s.A(a, i3, p), a3 = s.A(a, i4, p);
                    float b0 = s.B(b, p, j1), b1 = s.B(b, p, j2), b2 = s.B(b, p, j3), b3 = s.B(b, p, j4);
                    c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
                    c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
                    c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
                    c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
                }
            }
        }
        else
        {
            int lda = blockRows + 1, ldb = blockColumns + 1;                     // padded rows (see GemmTiling.SharedFloats)
            var aTile = shared.SubView(0, depth * lda);                          // [depth, BlockRows + 1]: op(A)ᵀ slice
            var bTile = shared.SubView(depth * lda, depth * ldb);                // [depth, BlockColumns + 1]: op(B) slice
            int thread = Group.IdxY * sx + Group.IdxX, threads = sx * sy;
            for (int k0 = 0; k0 < s.K; k0 += depth)
            {
                // Stage: consecutive threads take consecutive elements of the stored layout.
                for (int e = thread; e < depth * blockRows; e += threads)
                {
                    int r = s.TransposeA != 0 ? e % blockRows : e / depth;
                    int q = s.TransposeA != 0 ? e / blockRows : e % depth;
                    int i = rowBase + r, p = k0 + q;
                    aTile[q * lda + r] = i < s.M && p < s.K ? s.A(a, i, p) : 0f;
                }
                for (int e = thread; e < depth * blockColumns; e += threads)
                {
                    int c = s.TransposeB != 0 ? e / depth : e % blockColumns;
                    int q = s.TransposeB != 0 ? e % depth : e / blockColumns;
                    int j = columnBase + c % sx + c / sx * stride, p = k0 + q; // = columnBase + c on the plain tiling
                    bTile[q * ldb + c] = j < s.N && p < s.K ? s.B(b, p, j) : 0f;
                }
                Group.Barrier();
                int slice = Math.Min(depth, s.K - k0);
                int ar = Group.IdxY, bc = Group.IdxX;
                if (micro == 1)
                {
                    for (int q = 0; q < slice; q++)
                        c00 += aTile[q * lda + ar] * bTile[q * ldb + bc];
                }
                else
                {
                    for (int q = 0; q < slice; q++)
                    {
                        int ao = q * lda + ar, bo = q * ldb + bc;
                        float a0 = aTile[ao], a1 = aTile[ao + sy], a2 = aTile[ao + 2 * sy], a3 = aTile[ao + 3 * sy];
                        float b0 = bTile[bo], b1 = bTile[bo + sx], b2 = bTile[bo + 2 * sx], b3 = bTile[bo + 3 * sx];
                        c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
                        c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
                        c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
                        c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
                    }
                }
                Group.Barrier();
            }
        }
        if (gateStride > 0 && j0 >= gateStride)
            return; // a lane past the last hidden unit
        if (i0 < s.M)
            epilogue.ApplyRow(s, i0, j0, stride, micro, c00, c01, c02, c03);
        if (micro == 1)
            return;
        if (i0 + sy < s.M)
            epilogue.ApplyRow(s, i0 + sy, j0, stride, micro, c10, c11, c12, c13);
        if (i0 + 2 * sy < s.M)
            epilogue.ApplyRow(s, i0 + 2 * sy, j0, stride, micro, c20, c21, c22, c23);
        if (i0 + 3 * sy < s.M)
            epilogue.ApplyRow(s, i0 + 3 * sy, j0, stride, micro, c30, c31, c32, c33);
    }

    private Action<KernelConfig, GemmShape, int, int, int, ArrayView<float>, ArrayView<float>, GemmEpilogue> gemm = null!;

    /// <summary>Loads <see cref="GemmTiledKernel{TEpilogue}"/> for one epilogue type.</summary>
    private Action<KernelConfig, GemmShape, int, int, int, ArrayView<float>, ArrayView<float>, TEpilogue> LoadGemmKernel<TEpilogue>()
        where TEpilogue : struct, IGemmEpilogue =>
        Accelerator.LoadStreamKernel<GemmShape, int, int, int, ArrayView<float>, ArrayView<float>, TEpilogue>(GemmTiledKernel);

    private void LoadGemm() => gemm = LoadGemmKernel<GemmEpilogue>();

    /// <summary>Launches a GEMM-shaped kernel on the plain tiling chosen by <see cref="TilingFor"/> for s's [M, N] output.</summary>
    private void LaunchGemm<TEpilogue>(Action<KernelConfig, GemmShape, int, int, int, ArrayView<float>, ArrayView<float>, TEpilogue> kernel,
        GemmShape s, ArrayView<float> a, ArrayView<float> b, TEpilogue epilogue)
        where TEpilogue : struct, IGemmEpilogue
    {
        var t = TilingFor(s.M, s.N);
        kernel(GemmConfig(t, s.M, s.N, s.Batch), s, t.Micro, t.Depth, 0, a, b, epilogue);
    }

    /// <summary>
    /// Launches a GEMM-shaped kernel on <see cref="GateTiling"/> for an output [M, g·H] whose epilogue needs
    /// the g ≤ 4 gate columns of each hidden unit together (columns u + c·H in one thread).
    /// </summary>
    private void LaunchGated<TEpilogue>(Action<KernelConfig, GemmShape, int, int, int, ArrayView<float>, ArrayView<float>, TEpilogue> kernel,
        GemmShape s, int hidden, ArrayView<float> a, ArrayView<float> b, TEpilogue epilogue)
        where TEpilogue : struct, IGemmEpilogue
    {
        var t = GateTiling;
        Require(s.N <= t.Micro * hidden, $"the gate tiling holds {t.Micro} gates of a unit, not {s.N / hidden}.");
        kernel(GemmConfig(t, s.M, hidden * t.Micro, 1), s, t.Micro, t.Depth, hidden, a, b, epilogue);
    }

    /// <summary>
    /// The tiling for an [M, N] output: the large (register-tiled) one when it still gives at least
    /// <see cref="MinLargeGroups"/> groups, else the small one, which keeps more threads busy on
    /// small outputs such as the per-step recurrent [B, H].
    /// </summary>
    public GemmTiling TilingFor(int m, int n) => LargeTiling.Groups(m, n) >= MinLargeGroups ? LargeTiling : SmallTiling;

    /// <summary>Launch configuration of <paramref name="t"/> over <paramref name="batch"/> [M, N] outputs, one per grid z (shared memory only where <see cref="SharedTiles"/>).</summary>
    private KernelConfig GemmConfig(GemmTiling t, int m, int n, int batch) =>
        new(new Index3D(GemmTiling.DivUp(n, t.BlockColumns), GemmTiling.DivUp(m, t.BlockRows), batch),
            new Index3D(t.ThreadsX, t.ThreadsY, 1),
            SharedTiles ? SharedMemoryConfig.RequestDynamic<float>(t.SharedFloats) : SharedMemoryConfig.Empty);

    private static void RequireShape(GemmShape s)
    {
        Require(s.M > 0 && s.N > 0 && s.K >= 0, $"GEMM sizes must be positive (M={s.M}, N={s.N}, K={s.K}).");
        Require(s.Consistent, $"GEMM strides must cover their rows (lda={s.Lda}, ldb={s.Ldb}, ldc={s.Ldc}, batch={s.Batch}).");
    }

    /// <summary><c>C = α·op(A)·op(B) + β·C</c> for row-major dense views.</summary>
    public void Gemm(GemmShape s, float alpha, ArrayView<float> a, ArrayView<float> b, float beta, ArrayView<float> c)
    {
        RequireShape(s);
        RequireLength(a, s.ALength, nameof(a));
        RequireLength(b, s.BLength, nameof(b));
        RequireLength(c, s.CLength, nameof(c));
        Count();
        LaunchGemm(gemm, s, a, b, new GemmEpilogue(alpha, beta, 0, 0, c, c, c));
    }

    /// <summary>
    /// <c>C = op(A)·op(B)</c> on <see cref="GateTiling"/> with gate stride <paramref name="hidden"/> (N ≤ 4·hidden):
    /// the plain GEMM epilogue behind the cells' tiling, so tests can check that tiling on its own.
    /// </summary>
    internal void GemmGateTiled(GemmShape s, int hidden, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c)
    {
        RequireShape(s);
        Require(s.Batch == 1, $"the gate tiling runs one product, not {s.Batch}.");
        Require(hidden > 0 && s.N <= GateTiling.Micro * hidden, $"gate tiling of N={s.N} columns needs 0 < N ≤ {GateTiling.Micro}·H (H={hidden}).");
        RequireLength(a, s.ALength, nameof(a));
        RequireLength(b, s.BLength, nameof(b));
        RequireLength(c, s.CLength, nameof(c));
        Count();
        LaunchGated(gemm, s, hidden, a, b, new GemmEpilogue(1f, 0f, 0, 0, c, c, c));
    }

    /// <summary>
    /// <c>C = op(A)·op(B) + bias1 (+ bias2)</c>, biases [N] broadcast over the M rows; pass an
    /// invalid (default) <paramref name="bias2"/> for a single bias. bias2 is added only to the columns
    /// below <paramref name="bias2Columns"/> (a GRU's hoisted input term takes b_hr and b_hz, not b_hn).
    /// </summary>
    public void GemmBias(GemmShape s, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> bias1, ArrayView<float> bias2 = default,
        int bias2Columns = int.MaxValue)
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
        Require(bias2Columns >= 0, $"bias2Columns must not be negative ({bias2Columns}).");
        Count();
        LaunchGemm(gemm, s, a, b, new GemmEpilogue(1f, 0f, biasCount, bias2Columns, c, bias1, bias2));
    }
}
