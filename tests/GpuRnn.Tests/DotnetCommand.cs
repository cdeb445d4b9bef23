using System.Diagnostics;
using NUnit.Framework;

namespace GpuRnn.Tests;

/// <summary>Runs the <c>dotnet</c> command line (or a program it installed) as a child process, for the packaging and example tests.</summary>
internal static class DotnetCommand
{
    /// <summary>The dotnet host running these tests (DOTNET_HOST_PATH, set by <c>dotnet test</c>), else <c>dotnet</c> on the PATH.</summary>
    public static string Host() => Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet";

    /// <summary>Ignores the test when no .NET SDK can be run (the self-contained test program on a machine with the runtime only).</summary>
    public static void RequireSdk()
    {
        var (code, output) = Run(Host(), ["--list-sdks"], Environment.CurrentDirectory, TimeSpan.FromMinutes(1));
        if (code != 0 || !output.Contains("10.", StringComparison.Ordinal))
            Assert.Ignore($"no .NET 10 SDK to run here ({Host()} --list-sdks: exit {code})");
    }

    /// <summary>
    /// Runs <paramref name="file"/> with <paramref name="args"/> in <paramref name="folder"/> and returns its exit code
    /// and its stdout and stderr interleaved; fails the test when it runs past <paramref name="timeout"/>. MSBuild's
    /// variables of the surrounding <c>dotnet test</c> are not passed on (they would steer the child's build), nor
    /// are build servers left running. <paramref name="environment"/> adds or replaces variables.
    /// </summary>
    public static (int Code, string Output) Run(string file, IEnumerable<string> args, string folder, TimeSpan timeout, IReadOnlyDictionary<string, string>? environment = null)
    {
        var info = new ProcessStartInfo(file) { WorkingDirectory = folder, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args)
            info.ArgumentList.Add(a);
        foreach (string name in info.Environment.Keys.Where(k => k.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase)).ToList())
            info.Environment.Remove(name);
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment["DOTNET_NOLOGO"] = "1";
        info.Environment["DOTNET_CLI_USE_MSBUILD_SERVER"] = "0";
        info.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        info.Environment["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
            info.Environment[name] = value;
        var lines = new List<string>();
        using var process = new Process { StartInfo = info };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (lines) lines.Add(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (lines) lines.Add(e.Data); };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{file} {string.Join(' ', args)} ran past {timeout.TotalSeconds:F0} s:\n{Tail(lines)}");
        }
        process.WaitForExit(); // drains the output events
        lock (lines)
            return (process.ExitCode, string.Join('\n', lines));
    }

    /// <summary>The last lines of an output, for a failure message.</summary>
    public static string Tail(IReadOnlyList<string> lines, int count = 40) => string.Join('\n', lines.Skip(Math.Max(0, lines.Count - count)));
}
