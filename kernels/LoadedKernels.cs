using System.Reflection;
using ILGPU;
using ILGPU.Runtime;

namespace GpuRnn.Kernels;

/// <summary>
/// One kernel specialisation a <see cref="DeviceKernels"/> loaded, as the static proof (DESIGN.md §8a: perf's
/// <c>ptx</c> command and <c>PtxTests</c>) compiles it for CUDA without a GPU.
/// </summary>
/// <param name="Launcher">The field that holds its launcher (<c>recurrentForward</c>, …).</param>
/// <param name="Method">The kernel method as loaded, generic arguments (a GEMM epilogue) bound.</param>
/// <param name="ExplicitlyGrouped">True when its launcher sets the groups (a <see cref="KernelConfig"/>); false when ILGPU picks the group size.</param>
/// <param name="Groups">Explicitly grouped kernels: every group configuration their launchers use. Empty otherwise.</param>
public sealed record LoadedKernel(string Launcher, MethodInfo Method, bool ExplicitlyGrouped, IReadOnlyList<KernelGroup> Groups);

/// <summary>One group configuration a launcher uses.</summary>
/// <param name="Name">Which one: the <see cref="GemmTiling"/> property (<c>LargeTiling</c>, …), <c>ReduceGroup</c>, ….</param>
/// <param name="Threads">Threads per group.</param>
/// <param name="DynamicSharedBytes">Dynamic shared memory requested per group, in bytes.</param>
public readonly record struct KernelGroup(string Name, int Threads, int DynamicSharedBytes);

public sealed partial class DeviceKernels
{
    /// <summary>Threads per group every CUDA device allows (compute capability 2.0 and later).</summary>
    public const int CudaMaxThreadsPerGroup = 1024;

    /// <summary>
    /// For the static proof only: loads every kernel on <paramref name="accelerator"/> but chooses tiles as on a
    /// GPU, so <see cref="LoadedKernels"/> lists the launch configurations a CUDA device gets. Group sizes that
    /// follow the accelerator's limits (the reduction's) are taken from <paramref name="accelerator"/>, which
    /// must therefore allow <see cref="CudaMaxThreadsPerGroup"/> threads per group as CUDA devices do: a
    /// <c>CPUDevice(32, 32, 1)</c> will do. Launching through the result is not supported.
    /// </summary>
    /// <exception cref="ArgumentException">The accelerator allows fewer threads per group than a CUDA device.</exception>
    public static DeviceKernels WithGpuGroups(Accelerator accelerator)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        if (accelerator.MaxNumThreadsPerGroup < CudaMaxThreadsPerGroup)
            throw new ArgumentException($"{accelerator.Name} allows {accelerator.MaxNumThreadsPerGroup} threads per group; standing in for a CUDA device needs {CudaMaxThreadsPerGroup}.", nameof(accelerator));
        return new(accelerator, sharedTiles: null, gpuGroups: true);
    }

    /// <summary>
    /// Every kernel this object loaded, read off its launcher fields: a kernel added to this class is listed
    /// without being named anywhere. Explicitly grouped kernels carry the groups their launchers use (from
    /// the same configurations the launchers build); one whose kernel method <see cref="GroupsOf"/> does not
    /// know carries none, which <c>PtxTests</c> reports as a failure.
    /// </summary>
    public IReadOnlyList<LoadedKernel> LoadedKernels()
    {
        var loaded = new List<LoadedKernel>();
        foreach (var field in typeof(DeviceKernels).GetFields(BindingFlags.Instance | BindingFlags.NonPublic))
        {
            if (!typeof(Delegate).IsAssignableFrom(field.FieldType))
                continue;
            var launcher = (Delegate?)field.GetValue(this) ?? throw new InvalidOperationException($"launcher {field.Name} was never loaded.");
            var compiled = (KernelBehind(launcher, depth: 2) ?? throw new InvalidOperationException($"no ILGPU kernel found behind launcher {field.Name}.")).CompiledKernel;
            var method = compiled.SourceMethod as MethodInfo ?? throw new InvalidOperationException($"launcher {field.Name} runs no kernel method.");
            bool explicitly = compiled.IndexType == IndexType.KernelConfig;
            loaded.Add(new LoadedKernel(field.Name, method, explicitly, explicitly ? GroupsOf(method) : []));
        }
        return loaded;
    }

    /// <summary>
    /// The ILGPU kernel a launcher runs. ILGPU 1.5.3 binds an implicitly grouped launcher to its
    /// <see cref="Kernel"/>; a stream launcher (<c>LoadStreamKernel</c>) is a closure over such a delegate.
    /// </summary>
    private static Kernel? KernelBehind(Delegate launcher, int depth)
    {
        if (launcher.Target is Kernel kernel)
            return kernel;
        if (launcher.Target is null || depth == 0)
            return null;
        foreach (var field in launcher.Target.GetType().GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic))
        {
            if (field.GetValue(launcher.Target) is Delegate inner && KernelBehind(inner, depth - 1) is { } found)
                return found;
        }
        return null;
    }

    /// <summary>
    /// The group configurations the launchers give each explicitly grouped kernel method, built as the
    /// launchers build them. A new explicitly grouped kernel method adds its line here. A GEMM-shaped kernel
    /// is listed at every <see cref="GemmTiling"/> property of this class (a new tiling is covered without
    /// an edit), whether or not its own launcher uses each one.
    /// </summary>
    private IReadOnlyList<KernelGroup> GroupsOf(MethodInfo kernel) => kernel.Name switch
    {
        nameof(GemmTiledKernel) => typeof(DeviceKernels).GetProperties(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic)
            .Where(p => p.PropertyType == typeof(GemmTiling))
            .Select(p => (p.Name, Tiling: (GemmTiling)p.GetValue(this)!))
            .DistinctBy(t => t.Tiling)
            .Select(t => GroupOf(t.Name, GemmConfig(t.Tiling, 1, 1, 1)))
            .ToList(),
        nameof(ReduceSumKernel) => [GroupOf(nameof(ReduceGroup), ReduceConfig)],
        nameof(FusedForwardKernel) or nameof(FusedBackwardKernel) => [new KernelGroup(nameof(FusedThreads), FusedThreads, 0)],
        _ => [],
    };

    private static KernelGroup GroupOf(string name, KernelConfig config) =>
        new(name, config.GroupDim.Size, config.SharedMemoryConfig.UsesDynamicSharedMemory ? config.SharedMemoryConfig.ArraySize : 0);
}
