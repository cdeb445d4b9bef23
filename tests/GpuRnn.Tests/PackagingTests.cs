using System.IO.Compression;
using System.Runtime.InteropServices;
using System.Xml.Linq;
using GpuRnn.Checkpoints;
using NUnit.Framework;

namespace GpuRnn.Tests;

/// <summary>
/// What a user installs (issue 12): the packages are packed into a folder, the tool is installed from it with
/// <c>dotnet tool install --tool-path</c>, and the installed <c>gpurnn</c> prints its versions and trains. The
/// library packages are packed from this build (<c>--no-build</c>); the tool is packed for this machine's platform
/// in a folder of its own (<c>--artifacts-path</c>), as a user's <c>dotnet pack</c> would build it.
/// </summary>
[TestFixture, Category("Packaging"), NonParallelizable]
public sealed class PackagingTests
{
    /// <summary>The platforms the tool is packed for (GpuRnn.Cli.csproj's ToolPackageRuntimeIdentifiers).</summary>
    private static readonly string[] ToolPlatforms = ["linux-x64", "linux-arm64", "osx-x64", "osx-arm64", "win-x64"];

    /// <summary>The pointer package holds a settings file and the README: a few tens of KB.</summary>
    private const long OuterToolPackageMaxBytes = 100_000;

    /// <summary>
    /// One platform's package: the managed assemblies (~7 MB with ILGPU, ScottPlot, Spectre.Console) and that
    /// platform's SkiaSharp and HarfBuzz natives (8-12 MB measured; the portable package with every platform's was 79 MB).
    /// </summary>
    private const long PlatformToolPackageMaxBytes = 15_000_000;

    private static readonly TimeSpan PackTimeout = TimeSpan.FromMinutes(8), RunTimeout = TimeSpan.FromMinutes(2);

    private string dir = null!, feed = null!, tools = null!, platform = null!;
    private string version = null!;

    [OneTimeSetUp]
    public void PackAndInstall()
    {
        DotnetCommand.RequireSdk();
        platform = RuntimeInformation.RuntimeIdentifier;
        if (!ToolPlatforms.Contains(platform))
            Assert.Ignore($"the tool is packed for {string.Join(", ", ToolPlatforms)}, not {platform}");
        version = Versions.GpuRnn;
        string repo = TestData.RepoRoot();
        dir = Path.Combine(Path.GetTempPath(), "gpurnn-pack-" + Guid.NewGuid().ToString("N"));
        feed = Path.Combine(dir, "feed");
        tools = Path.Combine(dir, "tools");
        Directory.CreateDirectory(feed);
        Dotnet(repo, PackTimeout, "pack", Path.Combine(repo, "src", "GpuRnn.Core"), "-c", "Release", "--no-build", "-o", feed);
        Dotnet(repo, PackTimeout, "pack", Path.Combine(repo, "kernels"), "-c", "Release", "--no-build", "-o", feed);
        Dotnet(repo, PackTimeout, "pack", Path.Combine(repo, "src", "GpuRnn.Cli"), "-c", "Release", "-o", feed,
            "--artifacts-path", Path.Combine(dir, "artifacts"), $"-p:ToolPackageRuntimeIdentifiers={platform}");
        // Only this folder as a source: what is tested is what was just packed, and nothing is fetched.
        string config = Path.Combine(dir, "nuget.config");
        File.WriteAllText(config, $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration><packageSources><clear /><add key="packed" value="{feed}" /></packageSources></configuration>
            """);
        Dotnet(dir, RunTimeout, "tool", "install", "GpuRnn.Tool", "--version", version, "--tool-path", tools, "--configfile", config);
    }

    [OneTimeTearDown]
    public void RemoveFolder()
    {
        if (dir is not null && Directory.Exists(dir))
            Directory.Delete(dir, recursive: true);
    }

    [Test]
    public void LibraryPackagesCarryDocsSymbolsReadmeLicenceAndOneVersion()
    {
        using (var library = ZipFile.OpenRead(Package($"GpuRnn.{version}.nupkg")))
        {
            Assert.That(library.Entries.Select(e => e.FullName), Is.SupersetOf(new[] { "lib/net10.0/GpuRnn.Core.dll", "lib/net10.0/GpuRnn.Core.xml", "README.md" }));
            var spec = Nuspec(library);
            Assert.That(Meta(spec, "license"), Is.EqualTo("MIT"));
            Assert.That(Meta(spec, "readme"), Is.EqualTo("README.md"));
            Assert.That(spec.Descendants().Single(e => e.Name.LocalName == "repository").Attribute("type")?.Value, Is.EqualTo("git"));
            var dependencies = spec.Descendants().Where(e => e.Name.LocalName == "dependency").ToDictionary(e => e.Attribute("id")!.Value, e => e.Attribute("version")?.Value);
            Assert.That(dependencies, Does.ContainKey("GpuRnn.Kernels").WithValue(version), "the kernels package, same version");
            Assert.That(dependencies.Keys, Is.EquivalentTo(new[] { "GpuRnn.Kernels", "OnnxSharp", "Google.Protobuf" }), "nothing else: the runner's packages (plotting, console) stay out of the library");
        }
        using (var kernels = ZipFile.OpenRead(Package($"GpuRnn.Kernels.{version}.nupkg")))
        {
            Assert.That(kernels.Entries.Select(e => e.FullName), Is.SupersetOf(new[] { "lib/net10.0/GpuRnn.Kernels.dll", "lib/net10.0/GpuRnn.Kernels.xml" }));
            Assert.That(Nuspec(kernels).Descendants().Where(e => e.Name.LocalName == "dependency").Select(e => e.Attribute("id")?.Value), Does.Contain("ILGPU"));
        }
        foreach (string symbols in new[] { $"GpuRnn.{version}.snupkg", $"GpuRnn.Kernels.{version}.snupkg" })
        {
            using var zip = ZipFile.OpenRead(Package(symbols));
            Assert.That(zip.Entries.Any(e => e.FullName.EndsWith(".pdb", StringComparison.Ordinal)), Is.True, symbols);
        }
    }

    [Test]
    public void ToolPackagesAreSmallAndHoldOnlyThisPlatformsNatives()
    {
        string outer = Package($"GpuRnn.Tool.{version}.nupkg"), inner = Package($"GpuRnn.Tool.{platform}.{version}.nupkg");
        Assert.That(new FileInfo(outer).Length, Is.LessThan(OuterToolPackageMaxBytes));
        Assert.That(new FileInfo(inner).Length, Is.LessThan(PlatformToolPackageMaxBytes));
        using var zip = ZipFile.OpenRead(inner);
        var names = zip.Entries.Select(e => e.FullName).ToList();
        string native = OperatingSystem.IsWindows() ? "libSkiaSharp.dll" : OperatingSystem.IsMacOS() ? "libSkiaSharp.dylib" : "libSkiaSharp.so";
        Assert.That(names, Has.Some.EndsWith($"tools/net10.0/{platform}/{native}").Or.Some.EndsWith($"/{native}"));
        Assert.That(names.Where(n => n.Contains("/runtimes/", StringComparison.Ordinal)), Is.Empty, "no other platform's natives");
        Assert.That(names, Has.Some.EndsWith("/gpurnn.dll"));
    }

    [Test]
    public void InstalledToolPrintsTheGpuRnnAndIlgpuVersions()
    {
        var (code, output) = DotnetCommand.Run(Gpurnn(), ["--version"], dir, RunTimeout);
        Assert.That(code, Is.EqualTo(0), output);
        Assert.That(output.Trim(), Is.EqualTo(Versions.Summary));
        Assert.That(output, Does.StartWith($"GpuRnn {version}").And.Contain($"ILGPU {Versions.Ilgpu}"));
    }

    [Test]
    public void InstalledToolTrainsATinyModel()
    {
        string data = Path.Combine(dir, "names.txt"), model = Path.Combine(dir, "out", "names.safetensors");
        File.WriteAllText(data, "anna\nbob\ncarla\ndan\neve\nfrank\n");
        var (code, output) = DotnetCommand.Run(Gpurnn(),
            ["train", "--mode", "lines", "--data", data, "--device", "cpu", "--hidden", "8", "--layers", "1", "--batch", "2", "--steps", "3", "--val-fraction", "0", "--length", "5", "--out", model],
            dir, RunTimeout);
        Assert.That(code, Is.EqualTo(0), output);
        var trained = Checkpoint.Load(model);
        Assert.That(trained.Training!.Step, Is.EqualTo(3));
        Assert.That(new FileInfo(Path.ChangeExtension(model, ".loss.png")).Length, Is.GreaterThan(0), "the plot: this platform's SkiaSharp natives load");
    }

    [Test]
    public void LibraryPackageRunsAFileBasedScriptWithoutThePublishAotLine()
    {
        // A script outside the repository, as a user writes it: the package (its buildTransitive targets) turns off the
        // Native AOT default that ILGPU cannot run under. Packages restore into a folder of this test (the packed GpuRnn,
        // not one cached under the same version), from the packed folder and, for ILGPU, the machine's package cache.
        string script = Path.Combine(dir, "script");
        Directory.CreateDirectory(script);
        string cache = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } given
            ? given : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        File.WriteAllText(Path.Combine(script, "nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration><packageSources><clear /><add key="packed" value="{feed}" /><add key="cache" value="{cache}" /></packageSources></configuration>
            """);
        File.WriteAllText(Path.Combine(script, "train.cs"), $$"""
            #:package GpuRnn@{{version}}
            using GpuRnn;
            var data = TextData.Stream(DefaultCorpus.Text[..3000]);
            using var model = TextModel.Create(data, new ModelSettings { Hidden = 8 }, "cpu");
            var losses = model.Fit(data, new FitSettings { Steps = 2, Batch = 4, SeqLen = 8 });
            Console.WriteLine($"{Versions.Summary}; loss {losses[^1].Loss:F2}; sample of {model.Sample("A", 20, seed: 1).Length} characters");
            """);
        var (code, output) = DotnetCommand.Run(DotnetCommand.Host(), ["run", "train.cs"], script, PackTimeout,
            new Dictionary<string, string> { ["NUGET_PACKAGES"] = Path.Combine(dir, "packages") });
        Assert.That(code, Is.EqualTo(0), output);
        Assert.That(output, Does.Contain($"{Versions.Summary}; loss "));
    }

    private string Gpurnn() => Path.Combine(tools, OperatingSystem.IsWindows() ? "gpurnn.exe" : "gpurnn");

    private string Package(string name)
    {
        string path = Path.Combine(feed, name);
        Assert.That(File.Exists(path), Is.True, $"{name} in {string.Join(", ", Directory.GetFiles(feed).Select(Path.GetFileName))}");
        return path;
    }

    private static XElement Nuspec(ZipArchive package)
    {
        using var stream = package.Entries.Single(e => e.FullName.EndsWith(".nuspec", StringComparison.Ordinal)).Open();
        return XElement.Load(stream);
    }

    private static string? Meta(XElement nuspec, string name) => nuspec.Descendants().FirstOrDefault(e => e.Name.LocalName == name)?.Value;

    private static void Dotnet(string folder, TimeSpan timeout, params string[] args)
    {
        var (code, output) = DotnetCommand.Run(DotnetCommand.Host(), args, folder, timeout);
        Assert.That(code, Is.EqualTo(0), $"dotnet {string.Join(' ', args)}:\n{output}");
    }
}
