using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;

namespace GpuRnn.Kernels;

/// <summary>
/// The one narrow door between the model code and the device: every kernel is loaded once per
/// accelerator here, and every launch goes through a typed, validating launcher that counts it.
/// Each piece of math lives in its own partial file (kernels first, then launchers).
/// </summary>
public sealed partial class DeviceKernels : IDisposable
{
    // Stands in for "no lengths" in the recurrent kernels: a kernel argument must be a real view.
    private readonly MemoryBuffer1D<int, Stride1D.Dense> noLengths;

    /// <summary>Creates the launchers for <paramref name="accelerator"/>; compiles every kernel now, not in the step.</summary>
    /// <param name="accelerator">Where the kernels run.</param>
    /// <param name="sharedTiles">Force the shared-memory GEMM tiles on (tests use it to check the GPU path on the CPU accelerator); null picks per accelerator.</param>
    public DeviceKernels(Accelerator accelerator, bool? sharedTiles = null)
        : this(accelerator, sharedTiles, gpuGroups: false)
    {
    }

    private DeviceKernels(Accelerator accelerator, bool? sharedTiles, bool gpuGroups)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        Accelerator = accelerator;
        // Tiling per accelerator kind (DESIGN.md §9), fixed here so the step never decides it anew.
        // GPUs: shared-memory tiles; the large tiling gives each of 16×16 threads a 4×4 register
        // tile (64×64 of C per group, (65 + 65)·16·4 B ≈ 8 KB of shared memory, well inside 48 KB);
        // the small one gives 16×16 threads one output each (16×16 per group, 2 KB) and is used when
        // the large one would leave multiprocessors idle (the per-step recurrent [B, H] at B = 64).
        // The CPU accelerator emulates every barrier with OS threads and allows at most 16 threads
        // per group: by default it skips shared memory and runs 1×1 groups with a 4×4 register tile
        // (small outputs: 2×2 groups of single outputs); forced shared tiles use 2×2 threads × 4×4
        // (8×8 of C, 4-deep slices) and 4×4 threads × 1×1, so both tilings, partial register tiles
        // and several K rounds occur at test sizes. The gate tiling (the cells' forward step, DESIGN.md
        // §3a) needs 4 register columns, which it spreads over the 4 gates of a hidden unit: on GPUs 32×4
        // threads (32 units × 16 rows per group, (17 + 129)·16·4 B ≈ 9 KB), on the CPU the large tiling.
        bool cpu = accelerator.AcceleratorType == AcceleratorType.CPU;
        cpu &= !gpuGroups; // WithGpuGroups: the tiles of a GPU, whatever accelerator loads the kernels
        SharedTiles = sharedTiles ?? !cpu;
        if (!cpu)
        {
            LargeTiling = new GemmTiling(16, 16, 4, 16);
            SmallTiling = new GemmTiling(16, 16, 1, 16);
            GateTiling = new GemmTiling(32, 4, 4, 16);
            MinLargeGroups = Math.Max(accelerator.NumMultiprocessors, 1);
        }
        else if (SharedTiles)
        {
            LargeTiling = new GemmTiling(2, 2, 4, 4);
            SmallTiling = new GemmTiling(4, 4, 1, 4);
            MinLargeGroups = 4;
            GateTiling = LargeTiling;
        }
        else
        {
            LargeTiling = new GemmTiling(1, 1, 4, 1);
            SmallTiling = new GemmTiling(2, 2, 1, 1);
            MinLargeGroups = 2;
            GateTiling = LargeTiling;
        }
        int sharedBytes = Math.Max(LargeTiling.SharedFloats, GateTiling.SharedFloats) * sizeof(float);
        if (SharedTiles && sharedBytes > accelerator.MaxSharedMemoryPerGroup)
            throw new NotSupportedException($"{accelerator.Name} offers {accelerator.MaxSharedMemoryPerGroup} B of shared memory per group; the GEMM tiles need {sharedBytes} B.");
        ReduceGroup = Math.Min(accelerator.MaxNumThreadsPerGroup, 256);
        // The fused recurrence (DESIGN.md §9): a group owns FusedRows whole batch rows for all T steps. GPUs: one
        // row per group, 256 threads over its units (B groups over the multiprocessors, W_hh from L2). The CPU
        // accelerator: one thread per group (a barrier of one thread costs nothing), the rows in parallel; with
        // forced shared tiles (tests) 2 rows and 4 threads, so threads read units other threads wrote last step
        // and a missing barrier or a wrong row split shows on the CPU too.
        FusedRows = cpu && SharedTiles ? 2 : 1;
        FusedThreads = !cpu ? Math.Min(accelerator.MaxNumThreadsPerGroup, 256) : SharedTiles ? 4 : 1;
        LoadGemm();
        LoadCells();
        LoadEmbedding();
        LoadSoftmaxCrossEntropy();
        LoadReductions();
        LoadOptimizers();
        noLengths = accelerator.Allocate1D<int>(1);
        LoadLastState();
        LoadDropout();
        LoadReverse();
        LoadAttention();
        LoadAdditiveAttention();
    }

    /// <summary>Frees the kernels' own small device buffer (the accelerator frees the compiled kernels).</summary>
    public void Dispose() => noLengths.Dispose();

    /// <summary>The accelerator the kernels were compiled for.</summary>
    public Accelerator Accelerator { get; }

    /// <summary>Whether the GEMM-shaped kernels stage tiles in shared memory (GPUs) or run the plain K loop (the CPU accelerator).</summary>
    public bool SharedTiles { get; }

    /// <summary>The register-tiled GEMM tiling (4×4 outputs per thread), for outputs large enough to fill the device.</summary>
    public GemmTiling LargeTiling { get; }

    /// <summary>The one-output-per-thread tiling, for small outputs such as the per-step recurrent [B, H].</summary>
    public GemmTiling SmallTiling { get; }

    /// <summary>
    /// The tiling of the cells' forward step [B, g·H] (DESIGN.md §3a): its 4 register columns stand H apart,
    /// so one thread holds all gate pre-activations of one hidden unit for 4 batch rows.
    /// </summary>
    public GemmTiling GateTiling { get; }

    /// <summary>Fewest groups the large tiling must give an output for <see cref="TilingFor"/> to choose it.</summary>
    public int MinLargeGroups { get; }

    /// <summary>Threads of the single group that runs the deterministic reductions.</summary>
    public int ReduceGroup { get; }

    /// <summary>Kernel launches (and device-side copies) issued through this object so far.</summary>
    public long Launches { get; private set; }

    /// <summary>Bytes copied host → device through this object so far.</summary>
    public long BytesToDevice { get; private set; }

    /// <summary>Bytes copied device → host through this object so far.</summary>
    public long BytesToHost { get; private set; }

    private void Count() => Launches++;

    /// <summary>Copies <paramref name="source"/> into the start of <paramref name="target"/> (host → device, counted).</summary>
    public void Upload<T>(ReadOnlySpan<T> source, ArrayView<T> target) where T : unmanaged
    {
        if (source.Length > target.Length)
            throw new ArgumentException($"{source.Length} elements do not fit a device view of {target.Length}.", nameof(source));
        if (source.IsEmpty)
            return;
        target.SubView(0, source.Length).CopyFromCPU(source);
        BytesToDevice += (long)source.Length * System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
    }

    /// <summary>Copies the start of <paramref name="source"/> into <paramref name="target"/> (device → host, counted; waits for the device).</summary>
    public void Download<T>(ArrayView<T> source, Span<T> target) where T : unmanaged
    {
        if (target.Length > source.Length)
            throw new ArgumentException($"a device view of {source.Length} cannot fill {target.Length} elements.", nameof(target));
        if (target.IsEmpty)
            return;
        source.SubView(0, target.Length).CopyToCPU(target);
        BytesToHost += (long)target.Length * System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
    }

    /// <summary>Device → device copy of equal-length views (counted as a launch).</summary>
    public void Copy(ArrayView<float> source, ArrayView<float> target)
    {
        Require(source.Length == target.Length, $"copy of {source.Length} elements into a view of {target.Length}.");
        Count();
        source.CopyTo(target);
    }

    /// <summary>Sets every element of <paramref name="target"/> to zero (counted as a launch).</summary>
    public void Clear(ArrayView<float> target)
    {
        Count();
        target.MemSetToZero();
    }

    private static void Require(bool condition, string message)
    {
        if (!condition)
            throw new ArgumentException(message);
    }

    /// <summary>
    /// As <see cref="Require(bool, string)"/> for an interpolated message, which is only formatted when
    /// the condition fails: every launcher validates on every launch, and formatting eagerly would
    /// allocate a string per launch in the training step.
    /// </summary>
    private static void Require(bool condition, [InterpolatedStringHandlerArgument(nameof(condition))] ref FailureMessage message)
    {
        if (!condition)
            throw new ArgumentException(message.ToStringAndClear());
    }

    /// <summary>Builds an interpolated message only when the condition it belongs to is false.</summary>
    [InterpolatedStringHandler]
    private ref struct FailureMessage
    {
        private DefaultInterpolatedStringHandler inner;

        public FailureMessage(int literalLength, int formattedCount, bool condition, out bool isEnabled)
        {
            isEnabled = !condition;
            inner = isEnabled ? new DefaultInterpolatedStringHandler(literalLength, formattedCount) : default;
        }

        public void AppendLiteral(string value) => inner.AppendLiteral(value);

        public void AppendFormatted<T>(T value) => inner.AppendFormatted(value);

        public string ToStringAndClear() => inner.ToStringAndClear();
    }

    private static void RequireLength(ArrayView<float> view, long needed, string name)
    {
        if (view.Length < needed)
            throw new ArgumentException($"{name} holds {view.Length} elements but {needed} are needed.", name);
    }

    private static int DivUp(int a, int b) => (a + b - 1) / b;
}
