using ILGPU;
using ILGPU.Runtime;

namespace GpuRnn.Kernels;

/// <summary>
/// The one narrow door between the model code and the device: every kernel is loaded once per
/// accelerator here, and every launch goes through a typed, validating launcher that counts it.
/// Each piece of math lives in its own partial file (kernels first, then launchers).
/// </summary>
public sealed partial class DeviceKernels
{
    /// <summary>Creates the launchers for <paramref name="accelerator"/>; compiles every kernel now, not in the step.</summary>
    /// <param name="accelerator">Where the kernels run.</param>
    /// <param name="sharedTiles">Force the shared-memory GEMM tiles on (tests use it to check the GPU path on the CPU accelerator); null picks per accelerator.</param>
    public DeviceKernels(Accelerator accelerator, bool? sharedTiles = null)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        Accelerator = accelerator;
        // Tiling per accelerator kind (DESIGN.md §9): the CPU accelerator emulates every group
        // barrier with OS threads and allows at most 16 threads per group, so it gets 4×4 groups
        // that skip shared memory; GPUs get 16×16 shared-memory tiles (2·16·16·4 B = 2 KB per group).
        bool cpu = accelerator.AcceleratorType == AcceleratorType.CPU;
        Tile = cpu ? 2 : 16;
        SharedTiles = !cpu;
        ReduceGroup = Math.Min(accelerator.MaxNumThreadsPerGroup, 256);
        LoadGemm();
        LoadRecurrent();
        LoadEmbedding();
        LoadSoftmaxCrossEntropy();
        LoadReductions();
        LoadOptimizers();
        LoadLastState();
    }

    /// <summary>The accelerator the kernels were compiled for.</summary>
    public Accelerator Accelerator { get; }

    /// <summary>Edge of the square shared-memory tile used by the GEMM-based kernels.</summary>
    public int Tile { get; }

    /// <summary>Whether the GEMM-shaped kernels stage tiles in shared memory (GPUs) or run the plain K loop (the CPU accelerator).</summary>
    public bool SharedTiles { get; }

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

    private static void RequireLength(ArrayView<float> view, long needed, string name)
    {
        if (view.Length < needed)
            throw new ArgumentException($"{name} holds {view.Length} elements but {needed} are needed.", name);
    }

    private static int DivUp(int a, int b) => (a + b - 1) / b;
}
