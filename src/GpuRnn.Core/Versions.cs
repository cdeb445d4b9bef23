using System.Reflection;

namespace GpuRnn;

/// <summary>The versions of this library and of the ILGPU it runs on (what <c>gpurnn --version</c> prints).</summary>
public static class Versions
{
    /// <summary>The GpuRnn package version, e.g. <c>0.3.0</c> (Directory.Build.props sets it for every project).</summary>
    public static string GpuRnn => Informational(typeof(Versions).Assembly).Version;

    /// <summary>The commit GpuRnn was built from (its first 7 hex digits), or null when the build did not record one.</summary>
    public static string? Commit => Informational(typeof(Versions).Assembly).Commit;

    /// <summary>The version of the ILGPU assembly loaded, e.g. <c>1.5.3</c>.</summary>
    public static string Ilgpu => Informational(typeof(ILGPU.Context).Assembly).Version;

    /// <summary>One line: <c>GpuRnn 0.3.0 (commit abc1234), ILGPU 1.5.3</c>.</summary>
    public static string Summary => $"GpuRnn {GpuRnn}{(Commit is { } c ? $" (commit {c})" : "")}, ILGPU {Ilgpu}";

    /// <summary>An assembly's informational version split at '+' (SemVer build metadata: the commit).</summary>
    private static (string Version, string? Commit) Informational(Assembly assembly)
    {
        string text = assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
            ?? assembly.GetName().Version?.ToString() ?? "unknown";
        int plus = text.IndexOf('+', StringComparison.Ordinal);
        return plus < 0 ? (text, null) : (text[..plus], text[(plus + 1)..Math.Min(text.Length, plus + 8)]);
    }
}
