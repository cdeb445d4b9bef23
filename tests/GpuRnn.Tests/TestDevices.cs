using NUnit.Framework;

namespace GpuRnn.Tests;

/// <summary>
/// The accelerators every device fixture runs on: the CPU accelerator always, plus each CUDA and
/// OpenCL device present. Devices are opened once per test run (kernel compilation is the slow part)
/// and disposed when the run ends.
/// </summary>
[SetUpFixture]
public sealed class TestDevices
{
    private static readonly Dictionary<string, GpuDevice> Open = [];
    private static readonly Lock Gate = new();

    /// <summary>Device specs for <c>TestFixtureSource</c>.</summary>
    public static IEnumerable<string> Specs()
    {
        yield return "cpu";
        foreach (var d in GpuDevice.List())
        {
            if (d.Kind != DeviceKind.Cpu)
                yield return d.Spec;
        }
    }

    /// <summary>
    /// Specs for the GEMM-shaped kernel fixtures: as <see cref="Specs"/>, plus the CPU accelerator
    /// with the GPU's shared-memory tiling forced on, so that path is checked without a GPU.
    /// </summary>
    public static IEnumerable<string> TiledSpecs() => Specs().Prepend(CpuTiled);

    /// <summary>The CPU accelerator with shared-memory tiles (4×4).</summary>
    public const string CpuTiled = "cpu+tiles";

    /// <summary>The shared device of a spec.</summary>
    public static GpuDevice Get(string spec)
    {
        lock (Gate)
        {
            if (!Open.TryGetValue(spec, out var device))
            {
                device = spec == CpuTiled ? GpuDevice.Open("cpu", sharedTiles: true) : GpuDevice.Open(spec);
                Open[spec] = device;
            }
            return device;
        }
    }

    /// <summary>
    /// Tolerance for results that pass through tanh: on CUDA sm_75+ XMath.Tanh compiles to
    /// tanh.approx.f32 (relative error about 2^-11), elsewhere tanh is correctly rounded float32.
    /// </summary>
    public static double TanhTolerance(GpuDevice device) => device.Info.Kind == DeviceKind.Cuda ? 1e-3 : 0;

    [OneTimeTearDown]
    public void CloseAll()
    {
        lock (Gate)
        {
            foreach (var d in Open.Values.Reverse())
                d.Dispose();
            Open.Clear();
        }
    }
}
