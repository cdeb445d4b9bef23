using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace GpuRnn.Perf;

/// <summary>
/// <c>gpurnn-perf ptx</c>: the static proof of the CUDA path without a GPU (DESIGN.md §8a). Compiles every
/// kernel specialisation the engine loads for each architecture, writes the .ptx (and .cubin) files, assembles
/// them with ptxas and prints one JSON line per kernel, group configuration and architecture.
/// </summary>
internal static class PtxCommand
{
    private const string Usage = "usage: gpurnn-perf ptx [--out DIR] [--arch sm_70,sm_80,sm_90] [--ptxas PATH] [--format json|markdown]";

    public static int Run(string[] args)
    {
        string outDir = Path.Combine("out", "ptx"), format = "json";
        string? ptxasOption = null;
        var archs = CudaArch.All;
        for (int i = 0; i < args.Length; i++)
        {
            string? value = i + 1 < args.Length ? args[i + 1] : null;
            switch (args[i])
            {
                case "--out" when value is not null:
                    outDir = value;
                    break;
                case "--ptxas" when value is not null:
                    ptxasOption = value;
                    break;
                case "--format" when value is not null:
                    if (value is not ("json" or "markdown"))
                        return Fail($"--format {value}: use json or markdown", 2);
                    format = value;
                    break;
                case "--arch" when value is not null:
                    var names = value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
                    var unknown = names.Where(n => CudaArch.All.All(a => a.Name != n)).ToList();
                    if (names.Length == 0 || unknown.Count > 0)
                        return Fail($"--arch {value}: use a comma-separated subset of {string.Join(",", CudaArch.All.Select(a => a.Name))}", 2);
                    archs = CudaArch.All.Where(a => names.Contains(a.Name)).ToList();
                    break;
                default:
                    return Fail($"unknown or incomplete option '{args[i]}{(value is null ? "" : " " + value)}'; {Usage}", 2);
            }
            i++;
        }

        string? ptxas = ptxasOption;
        if (ptxas is null)
        {
            ptxas = PtxProof.FindPtxas(RepoRoot(), out string reason);
            if (ptxas is null)
                return Fail($"{reason}; or pass --ptxas PATH", 1);
        }
        else if (!File.Exists(ptxas))
        {
            return Fail($"--ptxas {ptxas}: no such file", 2);
        }

        long start = Stopwatch.GetTimestamp();
        using var device = GpuDevice.Open("cpu");
        var kernels = PtxProof.Discover(device.Accelerator.Context);
        var lines = PtxProof.Run(device.Accelerator.Context, kernels, archs, outDir, ptxas);
        double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;

        if (format == "json")
        {
            // Relaxed escaping keeps the < > of generic kernel names readable.
            var options = new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.CamelCase, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
            foreach (var line in lines)
                Console.WriteLine(JsonSerializer.Serialize(line, options));
        }
        else
        {
            Console.Write(Markdown(lines));
        }
        int failed = lines.Count(l => l.Error is not null);
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"gpurnn-perf ptx: {kernels.Count} kernels × {archs.Count} architectures, {lines.Count} lines, {failed} failed; .ptx/.cubin in {outDir}; {seconds:F1} s"));
        return failed == 0 ? 0 : 1;
    }

    /// <summary>The table of perf/README.md: one row per line of the proof.</summary>
    public static string Markdown(IReadOnlyList<PtxLine> lines)
    {
        var s = new StringBuilder();
        s.AppendLine("| kernel | launch | arch | registers | spills st/ld (B) | stack (B) | shared (B) | threads/group | occupancy (limit) |");
        s.AppendLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var l in lines.OrderBy(l => l.Kernel, StringComparer.Ordinal).ThenBy(l => l.Launch, StringComparer.Ordinal).ThenBy(l => l.Arch, StringComparer.Ordinal))
        {
            string occupancy = l.Occupancy is { } o ? string.Create(CultureInfo.InvariantCulture, $"{o:P1} ({l.LimitedBy})") : "–";
            string row = l.Error is not null
                ? $"| `{l.Kernel}` | {l.Launch} | {l.Arch} | error: {l.Error} | | | | | |"
                : $"| `{l.Kernel}` | {l.Launch} | {l.Arch} | {l.Registers} | {l.SpillStores}/{l.SpillLoads} | {l.StackBytes} | {l.SharedBytes} | {l.ThreadsPerGroup} | {occupancy} |";
            s.AppendLine(row.Replace(" %", "%", StringComparison.Ordinal));
        }
        return s.ToString();
    }

    private static int Fail(string message, int code)
    {
        Console.Error.WriteLine("gpurnn-perf ptx: " + message);
        return code;
    }

    /// <summary>The repository root (GpuRnn.sln) above the working folder or the binary; else the working folder.</summary>
    private static string RepoRoot()
    {
        foreach (string from in (string[])[Environment.CurrentDirectory, AppContext.BaseDirectory])
        {
            for (var dir = new DirectoryInfo(from); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "GpuRnn.sln")))
                    return dir.FullName;
            }
        }
        return Environment.CurrentDirectory;
    }
}
