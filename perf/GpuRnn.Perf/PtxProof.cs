using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text.RegularExpressions;
using GpuRnn.Kernels;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;

namespace GpuRnn.Perf;

/// <summary>
/// The limits of one CUDA architecture that decide how many groups fit on a multiprocessor (CUDA C++
/// Programming Guide, "Technical Specifications per Compute Capability"; the rules of cuda_occupancy.h).
/// </summary>
/// <param name="Name">ptxas's name (<c>sm_90</c>).</param>
/// <param name="Architecture">ILGPU's name.</param>
/// <param name="MaxWarpsPerSm">Resident warps per multiprocessor (64 on sm_70/80/90; sm_86 has 48).</param>
/// <param name="MaxGroupsPerSm">Resident groups per multiprocessor.</param>
/// <param name="SharedPerSm">Shared memory per multiprocessor at the largest carve-out, in bytes.</param>
/// <param name="ReservedSharedPerGroup">Shared memory the system reserves per group (1 KB from sm_80 on).</param>
public sealed record CudaArch(string Name, CudaArchitecture Architecture, int MaxWarpsPerSm, int MaxGroupsPerSm, int SharedPerSm, int ReservedSharedPerGroup)
{
    /// <summary>32-bit registers per multiprocessor, and the most one group may hold.</summary>
    public const int RegistersPerSm = 64 * 1024;

    /// <summary>Registers are allocated per warp in units of this many.</summary>
    public const int RegisterGranularity = 256;

    /// <summary>The most registers one thread may use.</summary>
    public const int MaxRegistersPerThread = 255;

    /// <summary>Threads per warp.</summary>
    public const int WarpSize = 32;

    /// <summary>Warps of one multiprocessor schedule from this many register-file partitions.</summary>
    public const int SubPartitions = 4;

    /// <summary>Shared memory is allocated per group in units of this many bytes.</summary>
    public const int SharedGranularity = 128;

    /// <summary>Shared memory a group may use without opting in to more (and all ILGPU 1.5.3 offers).</summary>
    public const int MaxSharedPerGroup = 48 * 1024;

    /// <summary>Threads per group on every CUDA device.</summary>
    public const int MaxThreadsPerGroup = 1024;

    /// <summary>The architectures the static proof covers: V100, A100, H100/H200. ptxas of CUDA 11.8 knows sm_50 … sm_90.</summary>
    public static IReadOnlyList<CudaArch> All { get; } =
    [
        new("sm_70", CudaArchitecture.SM_70, 64, 32, 96 * 1024, 0),
        new("sm_80", CudaArchitecture.SM_80, 64, 32, 164 * 1024, 1024),
        new("sm_90", CudaArchitecture.SM_90, 64, 32, 228 * 1024, 1024),
    ];

    /// <summary>Registers one group holds: per-warp allocation rounded up to the granularity.</summary>
    public static int RegistersPerGroup(int registers, int threads) =>
        RoundUp(registers * WarpSize, RegisterGranularity) * DivUp(threads, WarpSize);

    /// <summary>How many groups of <paramref name="threads"/> threads fit on one multiprocessor, and what limits them.</summary>
    public Occupancy OccupancyOf(int registers, int threads, int sharedBytes)
    {
        int warps = DivUp(threads, WarpSize);
        int byWarps = MaxWarpsPerSm / warps;
        int warpRegisters = RoundUp(Math.Max(registers, 1) * WarpSize, RegisterGranularity);
        // Warps take registers from one of the four partitions of the register file each.
        int byRegisters = warpRegisters * warps > RegistersPerSm ? 0 : RegistersPerSm / SubPartitions / warpRegisters * SubPartitions / warps;
        int byShared = sharedBytes == 0 ? int.MaxValue : SharedPerSm / RoundUp(sharedBytes + ReservedSharedPerGroup, SharedGranularity);
        if (sharedBytes > MaxSharedPerGroup)
            byShared = 0;
        var limits = new (string Name, int Groups)[] { ("warps", byWarps), ("groups", MaxGroupsPerSm), ("registers", byRegisters), ("shared memory", byShared) };
        var limit = limits.MinBy(l => l.Groups);
        return new Occupancy(limit.Groups, limit.Groups * warps, (double)(limit.Groups * warps) / MaxWarpsPerSm, limit.Name);
    }

    /// <summary>
    /// The group size ILGPU gives an implicitly grouped kernel on CUDA: it asks the driver's
    /// <c>cuOccupancyMaxPotentialBlockSize</c>, which tries every multiple of the warp size from the largest the
    /// kernel allows down and keeps the first with the most resident threads. Emulated here from ptxas's numbers.
    /// </summary>
    public int AutoGroupSize(int registers, int staticSharedBytes)
    {
        int warpRegisters = RoundUp(Math.Max(registers, 1) * WarpSize, RegisterGranularity);
        int largest = Math.Min(MaxThreadsPerGroup, RegistersPerSm / warpRegisters * WarpSize);
        int best = WarpSize, bestThreads = 0;
        for (int threads = largest; threads >= WarpSize; threads -= WarpSize)
        {
            int resident = OccupancyOf(registers, threads, staticSharedBytes).GroupsPerSm * threads;
            if (resident > bestThreads)
            {
                best = threads;
                bestThreads = resident;
            }
            if (bestThreads == MaxWarpsPerSm * WarpSize)
                break;
        }
        return best;
    }

    private static int DivUp(int a, int b) => (a + b - 1) / b;

    private static int RoundUp(int a, int b) => DivUp(a, b) * b;
}

/// <summary>Resident groups and warps per multiprocessor, the fraction of the warp slots that is, and the limit that binds.</summary>
public readonly record struct Occupancy(int GroupsPerSm, int WarpsPerSm, double Fraction, string LimitedBy);

/// <summary>What ptxas -v reports for one kernel.</summary>
/// <param name="Registers">Registers per thread.</param>
/// <param name="SpillStores">Bytes of spill stores (all functions of the module).</param>
/// <param name="SpillLoads">Bytes of spill loads (all functions of the module).</param>
/// <param name="StackBytes">Stack frame of the entry function.</param>
/// <param name="SharedStaticBytes">Static shared memory.</param>
public sealed record PtxasReport(int Registers, int SpillStores, int SpillLoads, int StackBytes, int SharedStaticBytes);

/// <summary>One kernel specialisation the engine loads, under the name the proof reports.</summary>
/// <param name="Name">Method name with its generic arguments (<c>GemmTiledKernel&lt;GemmEpilogue&gt;</c>).</param>
/// <param name="Launchers">The DeviceKernels fields that launch it.</param>
/// <param name="Kernel">What DeviceKernels recorded.</param>
public sealed record ProofKernel(string Name, string Launchers, LoadedKernel Kernel);

/// <summary>
/// One line of the static proof: a kernel specialisation at one group configuration on one architecture.
/// Null numbers mean ptxas did not run (or failed: <see cref="Error"/>).
/// </summary>
public sealed record PtxLine(
    string Kernel, string Launchers, string Arch, string Launch, string GroupSizeFrom, string Ptx,
    int? Registers, int? SpillStores, int? SpillLoads, int? StackBytes,
    int? SharedStaticBytes, int SharedDynamicBytes, int? SharedBytes,
    int? ThreadsPerGroup, int? RegistersPerGroup, int? GroupsPerSm, int? WarpsPerSm, double? Occupancy, string? LimitedBy,
    string? Error);

/// <summary>
/// The static proof of the CUDA path (DESIGN.md §8a): every kernel specialisation the engine loads, compiled
/// by ILGPU's PTX backend for each architecture and assembled by NVIDIA's ptxas, with no GPU or driver.
/// Shared by perf's <c>ptx</c> command and PtxTests.
/// </summary>
public static class PtxProof
{
    /// <summary>Environment variable naming the ptxas to use.</summary>
    public const string PtxasVariable = "GPURNN_PTXAS";

    /// <summary>Where perf/fetch-ptxas.sh puts ptxas, relative to the repository root.</summary>
    public const string FetchedFolder = ".tools/ptxas";

    /// <summary>
    /// The highest PTX ISA that ptxas of CUDA 11.8 (Debian 12) reads. A CUDA accelerator picks the newest its
    /// driver allows; the ISA version changes the PTX text, not the instructions ptxas selects.
    /// </summary>
    public static readonly CudaInstructionSet InstructionSet = CudaInstructionSet.ISA_78;

    /// <summary>
    /// Every kernel specialisation <see cref="DeviceKernels"/> loads, with the groups its launchers use on a GPU:
    /// read off <see cref="DeviceKernels.WithGpuGroups"/> built in <paramref name="context"/> (the engine's) on a
    /// CPU accelerator that allows a CUDA device's 1024 threads per group (32 warps of 32).
    /// </summary>
    public static IReadOnlyList<ProofKernel> Discover(Context context)
    {
        using var accelerator = new CPUDevice(CudaArch.WarpSize, DeviceKernels.CudaMaxThreadsPerGroup / CudaArch.WarpSize, 1).CreateCPUAccelerator(context);
        using var kernels = DeviceKernels.WithGpuGroups(accelerator);
        return kernels.LoadedKernels()
            .GroupBy(k => k.Method)
            .Select(g => new ProofKernel(NameOf(g.Key), string.Join(",", g.Select(k => k.Launcher)), g.First()))
            .OrderBy(k => k.Name, StringComparer.Ordinal)
            .ToList();
    }

    /// <summary>The kernel method's name with its generic arguments.</summary>
    public static string NameOf(MethodInfo method) =>
        method.IsGenericMethod ? $"{method.Name}<{string.Join(",", method.GetGenericArguments().Select(t => t.Name))}>" : method.Name;

    /// <summary>
    /// The ptxas to use and, when there is none, why: <see cref="PtxasVariable"/>, else what perf/fetch-ptxas.sh
    /// fetched under <paramref name="repoRoot"/>, else ptxas on PATH.
    /// </summary>
    public static string? FindPtxas(string repoRoot, out string reason)
    {
        reason = "";
        string? named = Environment.GetEnvironmentVariable(PtxasVariable);
        if (!string.IsNullOrEmpty(named))
        {
            if (File.Exists(named))
                return named;
            reason = $"{PtxasVariable}={named} does not exist";
            return null;
        }
        string fetched = Path.Combine(repoRoot, FetchedFolder, "ptxas");
        if (File.Exists(fetched))
            return fetched;
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, "ptxas");
            if (File.Exists(candidate))
                return candidate;
        }
        string unavailable = Path.Combine(repoRoot, FetchedFolder, "UNAVAILABLE");
        reason = File.Exists(unavailable)
            ? $"perf/fetch-ptxas.sh could not fetch ptxas: {File.ReadAllText(unavailable).Trim()}"
            : $"no ptxas: not at {fetched}, not on PATH, {PtxasVariable} unset (run perf/fetch-ptxas.sh)";
        return null;
    }

    /// <summary>
    /// Compiles every kernel for every architecture into <paramref name="outDir"/> (<c>NAME.ARCH.ptx</c>) and, with
    /// a <paramref name="ptxas"/>, assembles each (<c>NAME.ARCH.cubin</c>): one line per kernel, group
    /// configuration and architecture. A kernel that does not compile or assemble gives a line with an error.
    /// </summary>
    public static IReadOnlyList<PtxLine> Run(Context context, IReadOnlyList<ProofKernel> kernels, IReadOnlyList<CudaArch> archs, string outDir, string? ptxas)
    {
        Directory.CreateDirectory(outDir);
        var lines = new List<PtxLine>();
        foreach (var arch in archs)
        {
            using var backend = new PTXBackend(context, new CudaCapabilityContext(arch.Architecture), arch.Architecture, InstructionSet, null);
            foreach (var kernel in kernels)
            {
                string file = Path.Combine(outDir, $"{FileName(kernel.Name)}.{arch.Name}.ptx");
                string? error = null;
                PtxasReport? report = null;
                try
                {
                    File.WriteAllText(file, CompilePtx(backend, kernel.Kernel));
                    if (ptxas is not null)
                        report = Assemble(ptxas, file, arch);
                }
                catch (Exception e)
                {
                    // Whatever failed (ILGPU's compiler, ptxas) is this kernel's result: report it, go on with the rest.
                    error = $"{e.GetType().Name}: {e.Message}";
                }
                lines.AddRange(LinesOf(kernel, arch, file, report, error));
            }
        }
        return lines;
    }

    private static IEnumerable<PtxLine> LinesOf(ProofKernel kernel, CudaArch arch, string file, PtxasReport? r, string? error)
    {
        const string Launcher = "launcher", Ilgpu = "ILGPU: cuOccupancyMaxPotentialBlockSize (emulated)";
        var groups = kernel.Kernel.ExplicitlyGrouped
            ? kernel.Kernel.Groups.Select(g => (g.Name, From: Launcher, Threads: (int?)g.Threads, g.DynamicSharedBytes))
            : [("auto", Ilgpu, r is null ? null : arch.AutoGroupSize(r.Registers, r.SharedStaticBytes), 0)];
        if (kernel.Kernel.ExplicitlyGrouped && kernel.Kernel.Groups.Count == 0)
        {
            error ??= $"explicitly grouped but DeviceKernels.GroupsOf declares no group for {kernel.Kernel.Method.Name}";
            groups = [("undeclared", Launcher, null, 0)];
        }
        foreach (var g in groups)
        {
            int? shared = r is null ? null : r.SharedStaticBytes + g.DynamicSharedBytes;
            Occupancy? o = r is null || g.Threads is null ? null : arch.OccupancyOf(r.Registers, g.Threads.Value, shared!.Value);
            yield return new PtxLine(kernel.Name, kernel.Launchers, arch.Name, g.Name, g.From, file,
                r?.Registers, r?.SpillStores, r?.SpillLoads, r?.StackBytes,
                r?.SharedStaticBytes, g.DynamicSharedBytes, shared,
                g.Threads, r is null || g.Threads is null ? null : CudaArch.RegistersPerGroup(r.Registers, g.Threads.Value),
                o?.GroupsPerSm, o?.WarpsPerSm, o?.Fraction, o?.LimitedBy, error);
        }
    }

    /// <summary>ILGPU's PTX for one kernel, as a CUDA accelerator of that architecture would compile it.</summary>
    public static string CompilePtx(PTXBackend backend, LoadedKernel kernel)
    {
        var entry = kernel.ExplicitlyGrouped
            ? EntryPointDescription.FromExplicitlyGroupedKernel(kernel.Method)
            : EntryPointDescription.FromImplicitlyGroupedKernel(kernel.Method);
        var compiled = (PTXCompiledKernel)backend.Compile(entry, new KernelSpecialization());
        return compiled.PTXAssembly;
    }

    /// <summary>Runs <c>ptxas -arch=… -v</c> on <paramref name="ptxFile"/> (writing the cubin beside it) and reads its report.</summary>
    public static PtxasReport Assemble(string ptxas, string ptxFile, CudaArch arch)
    {
        var start = new ProcessStartInfo(ptxas)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in (string[])[$"-arch={arch.Name}", "-v", "-o", Path.ChangeExtension(ptxFile, ".cubin"), ptxFile])
            start.ArgumentList.Add(a);
        using var process = Process.Start(start) ?? throw new PtxasException($"could not start {ptxas}");
        var stderr = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd() + stderr.Result;
        process.WaitForExit();
        if (process.ExitCode != 0)
            throw new PtxasException($"ptxas -arch={arch.Name} {Path.GetFileName(ptxFile)} exited {process.ExitCode}: {Tail(output)}");
        return ParseReport(output);
    }

    /// <summary>Reads ptxas -v's report of a module with one entry function (and any functions it calls).</summary>
    public static PtxasReport ParseReport(string output)
    {
        var used = Regex.Match(output, @"Used (\d+) registers(?:, (\d+) bytes smem)?");
        if (!used.Success)
            throw new PtxasException($"ptxas -v reported no register count: {Tail(output)}");
        var functions = Regex.Matches(output, @"Function properties for (\S+)\s+(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads");
        if (functions.Count == 0)
            throw new PtxasException($"ptxas -v reported no function properties: {Tail(output)}");
        var entry = Regex.Match(output, @"Compiling entry function '([^']+)'");
        int Int(System.Text.RegularExpressions.Group g) => g.Success ? int.Parse(g.Value, CultureInfo.InvariantCulture) : 0;
        int stack = functions.Where(m => m.Groups[1].Value == entry.Groups[1].Value).Select(m => Int(m.Groups[2])).FirstOrDefault();
        // Spills anywhere in the module count: a called function's spills run inside the kernel.
        return new PtxasReport(Int(used.Groups[1]), functions.Sum(m => Int(m.Groups[3])), functions.Sum(m => Int(m.Groups[4])), stack, Int(used.Groups[2]));
    }

    private static string FileName(string kernelName) => Regex.Replace(kernelName, "[^A-Za-z0-9_]+", "-").Trim('-');

    private static string Tail(string text)
    {
        string flat = Regex.Replace(text.Trim(), @"\s+", " ");
        return flat.Length <= 400 ? flat : "…" + flat[^400..];
    }
}

/// <summary>ptxas could not be run, failed, or reported something unreadable.</summary>
public sealed class PtxasException(string message) : Exception(message);
