using NUnit.Framework;

namespace GpuRnn.Tests;

/// <summary>
/// The file-based programs in examples/ (<c>dotnet run examples/x.cs</c>) compile against the library as it is and run
/// to the end with tiny sizes, as a user runs them (a child <c>dotnet run</c> from the repository root).
/// </summary>
[TestFixture, Category("Examples"), NonParallelizable]
public sealed class ExamplesTests
{
    /// <summary>The first run compiles the program (and checks the library is built): tens of seconds on a busy 2-core machine.</summary>
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(5);

    private static readonly string[] Tiny = ["--steps", "5", "--hidden", "8", "--device", "cpu"];

    [OneTimeSetUp]
    public void NeedsTheSdk() => DotnetCommand.RequireSdk();

    [Test]
    public void CharacterLanguageModelTrainsSavesLoadsAndSamples()
    {
        string model = Path.Combine(Path.GetTempPath(), "gpurnn-example-" + Guid.NewGuid().ToString("N") + ".safetensors");
        try
        {
            string output = RunExample("char_lm.cs", [.. Tiny, "--out", model]);
            Assert.That(output, Does.Contain("step 5: loss "));
            Assert.That(File.Exists(model), Is.True);
        }
        finally
        {
            File.Delete(model);
        }
    }

    [Test]
    public void ClassifierReportsHeldOutMetricsAndPredicts()
    {
        string output = RunExample("classifier.cs", Tiny);
        Assert.That(output, Does.Contain("of 557 sequences").And.Contain("confusion"), "10% of the 5,574 messages held out");
        Assert.That(output, Does.Match(@"(ham|spam) [01]\.[0-9]{3}  WINNER! claim your free prize now"));
    }

    [Test]
    public void EncoderDecoderReportsExactMatchAndTranslates()
    {
        string output = RunExample("seq2seq.cs", Tiny);
        Assert.That(output, Does.Contain("of 200 pairs"));
        Assert.That(output, Does.Contain("abcd -> "));
    }

    private static string RunExample(string file, string[] args)
    {
        string repo = TestData.RepoRoot();
        var (code, output) = DotnetCommand.Run(DotnetCommand.Host(), ["run", "-c", "Release", Path.Combine("examples", file), "--", .. args], repo, Timeout);
        Assert.That(code, Is.EqualTo(0), output);
        return output;
    }
}
