using GpuRnn.Kernels;
using GpuRnn.Perf;
using NUnit.Framework;

namespace GpuRnn.Tests;

/// <summary>
/// The static proof of the CUDA path (DESIGN.md §8a; perf's <c>ptx</c> command prints the same lines): every
/// kernel specialisation <c>DeviceKernels</c> loads compiles with ILGPU's PTX backend for sm_70, sm_80 and
/// sm_90, and NVIDIA's ptxas assembles it for each without spilling, at a launch configuration that fits
/// (registers × threads within the register file, shared memory within 48 KB). No GPU or driver is needed;
/// without ptxas (perf/fetch-ptxas.sh fetches it) the assembly test is reported skipped with the reason.
/// </summary>
public sealed class PtxTests
{
    private string outDir = null!;
    private IReadOnlyList<ProofKernel> kernels = null!;
    private IReadOnlyList<PtxLine> lines = null!;
    private string? ptxas;
    private string missing = "";

    [OneTimeSetUp]
    public void CompileEveryKernel()
    {
        outDir = Directory.CreateTempSubdirectory("gpurnn-ptx-").FullName;
        var context = TestDevices.Get("cpu").Accelerator.Context;
        kernels = PtxProof.Discover(context);
        ptxas = PtxProof.FindPtxas(TestData.RepoRoot(), out missing);
        lines = PtxProof.Run(context, kernels, CudaArch.All, outDir, ptxas);
    }

    [OneTimeTearDown]
    public void RemoveOutput() => Directory.Delete(outDir, recursive: true);

    [Test]
    public void EveryLoadedKernelIsFoundWithTheGroupsItsLauncherUses()
    {
        var names = kernels.Select(k => k.Name).ToList();
        Assert.That(names, Does.Contain("GemmTiledKernel<GemmEpilogue>").And.Contain("ReduceSumKernel").And.Contain("SoftmaxCrossEntropyKernel"));
        // The plain GEMM and at least a forward and a backward recurrent step, each its own specialisation.
        Assert.That(names.Count(n => n.StartsWith("GemmTiledKernel<", StringComparison.Ordinal)), Is.GreaterThanOrEqualTo(3));
        Assert.That(names, Is.Unique);
        Assert.Multiple(() =>
        {
            foreach (var k in kernels.Where(k => k.Kernel.ExplicitlyGrouped))
                Assert.That(k.Kernel.Groups, Is.Not.Empty, $"{k.Name} sets its own groups: declare them in DeviceKernels.GroupsOf");
            foreach (var k in kernels.Where(k => !k.Kernel.ExplicitlyGrouped))
                Assert.That(k.Kernel.Groups, Is.Empty, $"{k.Name}: ILGPU picks its group size");
        });
        // The GPU tilings of perf/README.md: 16×16 threads staging 16 rows of (64 + 1) + (64 + 1) floats, or of
        // (16 + 1) + (16 + 1) (GemmTiling.SharedFloats); the reduction: one group of 256 with a float each.
        var gemm = kernels.Single(k => k.Name == "GemmTiledKernel<GemmEpilogue>").Kernel.Groups;
        Assert.That(gemm.Select(g => (g.Name, g.Threads, g.DynamicSharedBytes)),
            Is.SupersetOf(new[] { ("LargeTiling", 256, 16 * 130 * 4), ("SmallTiling", 256, 16 * 34 * 4) }));
        Assert.That(kernels.Single(k => k.Name == "ReduceSumKernel").Kernel.Groups, Is.EqualTo(new[] { new KernelGroup("ReduceGroup", 256, 256 * 4) }));
    }

    [Test]
    public void GpuGroupsNeedAnAcceleratorThatAllowsACudaGroup()
    {
        // The default CPU accelerator allows 16 threads per group: the reduction's group would not be a GPU's.
        var e = Assert.Throws<ArgumentException>(() => DeviceKernels.WithGpuGroups(TestDevices.Get("cpu").Accelerator));
        Assert.That(e!.ParamName, Is.EqualTo("accelerator"));
    }

    [Test]
    public void EveryKernelCompilesToPtxForEachArchitecture()
    {
        Assert.That(lines.Select(l => (l.Kernel, l.Arch)).Distinct().Count(), Is.EqualTo(kernels.Count * CudaArch.All.Count));
        Assert.Multiple(() =>
        {
            foreach (var l in lines)
            {
                // An error from ptxas belongs to the next test; anything else is the compiler's.
                Assert.That(l.Error is null || l.Error.StartsWith(nameof(PtxasException), StringComparison.Ordinal), Is.True, $"{l.Kernel} {l.Arch}: {l.Error}");
                Assert.That(File.Exists(l.Ptx) && File.ReadAllText(l.Ptx).Contains(".entry", StringComparison.Ordinal), Is.True, $"{l.Kernel} {l.Arch}: no entry in {l.Ptx}");
            }
        });
    }

    [Test]
    public void EveryKernelAssemblesWithoutSpillingAndItsGroupsFit()
    {
        if (ptxas is null)
            Assert.Ignore(missing);
        Assert.Multiple(() =>
        {
            foreach (var l in lines)
            {
                string what = $"{l.Kernel} ({l.Launch}) on {l.Arch}";
                Assert.That(l.Error, Is.Null, what);
                if (l.Error is not null)
                    continue;
                Assert.That((l.SpillStores, l.SpillLoads), Is.EqualTo((0, 0)), $"{what}: spill stores, loads (bytes)");
                Assert.That(l.Registers, Is.InRange(1, CudaArch.MaxRegistersPerThread), $"{what}: registers per thread");
                Assert.That(l.RegistersPerGroup, Is.LessThanOrEqualTo(CudaArch.RegistersPerSm), $"{what}: registers × {l.ThreadsPerGroup} threads exceed the register file");
                Assert.That(l.SharedBytes, Is.LessThanOrEqualTo(CudaArch.MaxSharedPerGroup), $"{what}: shared memory per group");
                Assert.That(l.GroupsPerSm, Is.GreaterThanOrEqualTo(1), $"{what}: no group fits on a multiprocessor ({l.LimitedBy})");
            }
        });
    }

    [Test]
    public void PtxasReportsAreReadIncludingSpillsInCalledFunctions()
    {
        const string Output = """
            ptxas info    : 0 bytes gmem
            ptxas info    : Function properties for helper
                24 bytes stack frame, 16 bytes spill stores, 12 bytes spill loads
            ptxas info    : Compiling entry function 'Kernel_X' for 'sm_90'
            ptxas info    : Function properties for Kernel_X
                40 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads
            ptxas info    : Used 255 registers, 2048 bytes smem, 400 bytes cmem[0]
            """;
        Assert.That(PtxProof.ParseReport(Output), Is.EqualTo(new PtxasReport(255, 24, 16, 40, 2048)));
        Assert.That(PtxProof.ParseReport(Output.Replace(", 2048 bytes smem", "", StringComparison.Ordinal)).SharedStaticBytes, Is.Zero);
        Assert.Throws<PtxasException>(() => PtxProof.ParseReport("ptxas fatal   : Unresolved extern function"));
    }

    // Hand-computed with the rules of cuda_occupancy.h: registers go per warp in units of 256 from four
    // partitions of 16 K each; 64 warp slots; shared memory in units of 128 B plus 1 KB reserved per group from sm_80.
    [TestCase("sm_90", 80, 256, 8320, 3, "registers")]      // 2560 registers a warp: 6 warps a partition, 24 in all = 3 groups of 8
    [TestCase("sm_90", 32, 256, 0, 8, "warps")]             // 64 warps / 8
    [TestCase("sm_90", 32, 1024, 0, 2, "warps")]
    [TestCase("sm_70", 32, 64, 40 * 1024, 2, "shared memory")] // 96 KB / 40 KB
    [TestCase("sm_80", 32, 64, 40 * 1024, 4, "shared memory")] // 164 KB / 41 KB
    [TestCase("sm_90", 255, 1024, 0, 0, "registers")]       // 8 K registers a warp × 32 warps is four times the file
    [TestCase("sm_90", 16, 32, 0, 32, "groups")]            // at most 32 resident groups
    [TestCase("sm_90", 32, 64, 49 * 1024, 0, "shared memory")] // over the 48 KB a group may use
    public void OccupancyFollowsTheArchitectureLimits(string arch, int registers, int threads, int shared, int groups, string limitedBy)
    {
        var o = CudaArch.All.Single(a => a.Name == arch).OccupancyOf(registers, threads, shared);
        Assert.That((o.GroupsPerSm, o.LimitedBy), Is.EqualTo((groups, limitedBy)));
        Assert.That(o.Fraction, Is.EqualTo(groups * Math.Ceiling(threads / 32.0) / 64).Within(1e-12));
    }

    [TestCase(17, 0, 1024)]   // full occupancy at the largest group
    [TestCase(128, 0, 512)]   // 4096 registers a warp: 16 warps an SM; 512 is the largest group that reaches them
    [TestCase(255, 0, 256)]   // 8192 a warp: 8 warps an SM
    [TestCase(32, 40 * 1024, 1024)]
    public void ImplicitGroupSizeIsTheLargestWithTheMostResidentThreads(int registers, int shared, int expected)
    {
        Assert.That(CudaArch.All.Single(a => a.Name == "sm_90").AutoGroupSize(registers, shared), Is.EqualTo(expected));
    }
}
