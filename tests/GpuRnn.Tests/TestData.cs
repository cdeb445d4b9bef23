namespace GpuRnn.Tests;

/// <summary>Seeded random inputs for the tests.</summary>
internal static class TestData
{
    /// <summary>n floats uniform in [−scale, scale).</summary>
    public static float[] Uniform(Random rng, long n, double scale = 1.0)
    {
        var x = new float[n];
        for (long i = 0; i < n; i++)
            x[i] = (float)((rng.NextDouble() * 2 - 1) * scale);
        return x;
    }

    public static double[] ToDouble(float[] x) => Array.ConvertAll(x, v => (double)v);

    /// <summary>
    /// The repository root (where GpuRnn.sln is): GPURNN_REPO_ROOT when set (perf/gpu-bench.sh sets it for the
    /// self-contained test program, which runs from an unpacked archive and whose runner moves the current folder
    /// there), else found above the test binary's folder or the current folder.
    /// </summary>
    public static string RepoRoot()
    {
        string? given = Environment.GetEnvironmentVariable("GPURNN_REPO_ROOT");
        foreach (string start in new[] { given ?? "", AppContext.BaseDirectory, Environment.CurrentDirectory }.Where(s => s.Length > 0))
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "GpuRnn.sln")))
                    return dir.FullName;
            }
        }
        throw new InvalidOperationException($"GpuRnn.sln not found above {AppContext.BaseDirectory} or {Environment.CurrentDirectory}");
    }
}
