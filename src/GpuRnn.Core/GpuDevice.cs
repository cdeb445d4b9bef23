using GpuRnn.Kernels;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.OpenCL;

namespace GpuRnn;

/// <summary>The accelerator families GpuRnn runs on.</summary>
public enum DeviceKind
{
    /// <summary>An NVIDIA GPU through CUDA.</summary>
    Cuda,
    /// <summary>An OpenCL device (AMD/Intel GPUs, or an OpenCL CPU driver).</summary>
    OpenCL,
    /// <summary>ILGPU's CPU accelerator: emulated GPU threads, for tests and machines without a GPU.</summary>
    Cpu,
}

/// <summary>One accelerator ILGPU found: its kind, index within that kind, name and memory.</summary>
public sealed record DeviceInfo(DeviceKind Kind, int Index, string Name, long MemoryBytes, bool IsGpu)
{
    /// <summary>The spec that opens exactly this device, e.g. <c>cuda:0</c>.</summary>
    public string Spec => $"{DeviceInfo.KindName(Kind)}:{Index}";

    /// <inheritdoc/>
    public override string ToString() => Kind == DeviceKind.Cpu ? $"{Spec} {Name} (host memory)" : $"{Spec} {Name} ({MemoryBytes / (1024.0 * 1024 * 1024):0.0} GiB)";

    /// <summary>The lower-case name of a kind as device specs spell it: <c>cuda</c>, <c>opencl</c>, <c>cpu</c>.</summary>
    public static string KindName(DeviceKind kind) => kind switch
    {
        DeviceKind.Cuda => "cuda",
        DeviceKind.OpenCL => "opencl",
        DeviceKind.Cpu => "cpu",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown device kind"),
    };
}

/// <summary>
/// An opened accelerator with its compiled kernels. Owns the ILGPU context and accelerator;
/// dispose it after every model and trainer that uses it.
/// </summary>
public sealed class GpuDevice : IDisposable
{
    private readonly Context context;

    private GpuDevice(Context context, Accelerator accelerator, DeviceInfo info, bool? sharedTiles)
    {
        this.context = context;
        Accelerator = accelerator;
        Info = info;
        Kernels = new DeviceKernels(accelerator, sharedTiles);
    }

    /// <summary>What was opened (always report it to the user).</summary>
    public DeviceInfo Info { get; }

    /// <summary>The ILGPU accelerator.</summary>
    public Accelerator Accelerator { get; }

    /// <summary>The typed launchers, with the launch and copy counters.</summary>
    public DeviceKernels Kernels { get; }

    /// <summary>Lists the accelerators ILGPU finds, in the order <c>auto</c> prefers them.</summary>
    public static IReadOnlyList<DeviceInfo> List()
    {
        using var context = CreateContext();
        return Enumerate(context).Select(d => d.Info).ToList();
    }

    /// <summary>The device <see cref="Open"/> would pick for <paramref name="spec"/>, without opening it.</summary>
    /// <exception cref="GpuRnnException">The spec is malformed or names a device that is not present.</exception>
    public static DeviceInfo Resolve(string spec)
    {
        using var context = CreateContext();
        return Pick(context, spec).Info;
    }

    /// <summary>
    /// Opens a device by spec: <c>auto</c> (CUDA, then an OpenCL GPU, then the CPU accelerator),
    /// <c>cuda</c>, <c>opencl</c> or <c>cpu</c>, each with an optional <c>:index</c>.
    /// </summary>
    /// <param name="spec">Which device.</param>
    /// <param name="sharedTiles">Force shared-memory GEMM tiles on or off (null: the accelerator's default; see <see cref="DeviceKernels"/>).</param>
    /// <exception cref="GpuRnnException">The spec is malformed or names a device that is not present.</exception>
    public static GpuDevice Open(string spec = "auto", bool? sharedTiles = null)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var context = CreateContext();
        try
        {
            var (device, info) = Pick(context, spec);
            var accelerator = device.CreateAccelerator(context);
            try
            {
                return new GpuDevice(context, accelerator, info, sharedTiles);
            }
            catch
            {
                accelerator.Dispose();
                throw;
            }
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    private static (Device Device, DeviceInfo Info) Pick(Context context, string spec)
    {
        var (kind, index) = ParseSpec(spec);
        var found = Enumerate(context);
        (Device Device, DeviceInfo Info)? pick = kind is null
            ? found.First(d => d.Info.Kind != DeviceKind.OpenCL || d.Info.IsGpu)
            : found.Where(d => d.Info.Kind == kind).Skip(index).Cast<(Device, DeviceInfo)?>().FirstOrDefault();
        if (pick is null)
        {
            string present = string.Join(", ", found.Select(d => d.Info.Spec + " " + d.Info.Name));
            throw new GpuRnnException("device", $"{spec}: no such device; present: {present}");
        }
        return pick.Value;
    }

    /// <summary>An ILGPU context with every accelerator kind and the algorithms library.</summary>
    /// <exception cref="GpuRnnException">The program runs without dynamic code (Native AOT, the default of a .NET 10 file-based app), which ILGPU needs.</exception>
    private static Context CreateContext()
    {
        if (!System.Runtime.CompilerServices.RuntimeFeature.IsDynamicCodeSupported)
            throw new GpuRnnException("ILGPU compiles its kernels at run time, which this program does not allow (PublishAot is on, the default of a file-based app): add '#:property PublishAot=false' to the script, or <PublishAot>false</PublishAot> to the project");
        return Context.Create(b => b.Default().EnableAlgorithms());
    }

    private static (DeviceKind? Kind, int Index) ParseSpec(string spec)
    {
        string s = spec.Trim().ToLowerInvariant();
        string name = s;
        int index = 0;
        int colon = s.IndexOf(':');
        if (colon >= 0)
        {
            name = s[..colon];
            if (!int.TryParse(s[(colon + 1)..], out index) || index < 0)
                throw new GpuRnnException("device", $"{spec}: the index after ':' must be a non-negative integer");
        }
        DeviceKind? kind = name switch
        {
            "auto" => null,
            "cuda" => DeviceKind.Cuda,
            "opencl" => DeviceKind.OpenCL,
            "cpu" => DeviceKind.Cpu,
            _ => throw new GpuRnnException("device", $"{spec}: unknown kind '{name}'; use auto, cuda, opencl or cpu (optionally with :index)"),
        };
        if (kind is null && colon >= 0)
            throw new GpuRnnException("device", $"{spec}: 'auto' takes no index");
        return (kind, index);
    }

    /// <summary>Every device with its info, sorted by preference: CUDA, OpenCL GPUs, other OpenCL, CPU.</summary>
    private static List<(Device Device, DeviceInfo Info)> Enumerate(Context context)
    {
        var result = new List<(Device, DeviceInfo, int Rank)>();
        var perKind = new Dictionary<DeviceKind, int>();
        foreach (var device in context.Devices)
        {
            DeviceKind kind;
            bool gpu;
            switch (device.AcceleratorType)
            {
                case AcceleratorType.Cuda:
                    kind = DeviceKind.Cuda;
                    gpu = true;
                    break;
                case AcceleratorType.OpenCL:
                    kind = DeviceKind.OpenCL;
                    gpu = device is CLDevice cl && cl.DeviceType == CLDeviceType.CL_DEVICE_TYPE_GPU;
                    break;
                case AcceleratorType.CPU:
                    kind = DeviceKind.Cpu;
                    gpu = false;
                    break;
                default:
                    continue; // a backend GpuRnn does not support (e.g. Velocity) is not offered
            }
            int index = perKind.GetValueOrDefault(kind);
            perKind[kind] = index + 1;
            int rank = kind switch
            {
                DeviceKind.Cuda => 0,
                DeviceKind.OpenCL => gpu ? 1 : 2,
                DeviceKind.Cpu => 3,
                _ => throw new InvalidOperationException($"unhandled device kind {kind}"),
            };
            result.Add((device, new DeviceInfo(kind, index, device.Name, device.MemorySize, gpu), rank));
        }
        return result.OrderBy(r => r.Rank).ThenBy(r => r.Item2.Index).Select(r => (r.Item1, r.Item2)).ToList();
    }

    /// <summary>Releases the accelerator, then the context (reverse order of creation).</summary>
    public void Dispose()
    {
        Kernels.Dispose();
        Accelerator.Dispose();
        context.Dispose();
    }
}
