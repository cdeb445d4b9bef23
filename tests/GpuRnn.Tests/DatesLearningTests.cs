using System.Diagnostics;
using System.Text.Json;
using NUnit.Framework;

namespace GpuRnn.Tests;

/// <summary>
/// The encoder–decoder recipe of the README on the dates task of <c>examples/make_pairs.py</c>, through the
/// command line: an LSTM gets exact matches where the Elman model of the README gets none (0% after 2000
/// steps). Measured here (2026-11-30, the same flags through `gpurnn train` and `gpurnn eval`): 76.5% exact
/// match and 95.6% token accuracy on the 400 held-out dates after 1000 steps, 2.5% and 78.1% after 500.
/// About 25 minutes on the 2-core CPU accelerator (shared with other builds), so it runs only when asked
/// for by name.
/// </summary>
[Category("Learning")]
[Explicit("about 25 minutes on a 2-core CPU")]
public sealed class DatesLearningTests : CliHarness
{
    [Test]
    public void LstmEncoderDecoderGetsDatesExactlyRight()
    {
        string pairs = P("dates.tsv"), model = P("dates.safetensors"), val = P("val.tsv");
        string script = Path.Combine(TestData.RepoRoot(), "examples", "make_pairs.py");
        var psi = new ProcessStartInfo("python3", $"\"{script}\" dates 20000 1") { RedirectStandardOutput = true };
        using (var process = Process.Start(psi)!)
        {
            File.WriteAllText(pairs, process.StandardOutput.ReadToEnd());
            process.WaitForExit();
            Assert.That(process.ExitCode, Is.Zero, "make_pairs.py");
        }
        File.WriteAllLines(val, File.ReadAllLines(pairs)[^400..]); // the held-out tail of --val-fraction 0.02
        var train = Run("train", "--mode", "pairs", "--cell", "lstm", "--data", pairs, "--hidden", "64", "--layers", "1", "--batch", "32",
            "--steps", Steps.ToString(System.Globalization.CultureInfo.InvariantCulture), "--eval-every", "500", "--val-fraction", "0.02", "--lr", "0.01", "--device", "cpu", "--json", "--out", model);
        Assert.That(train.Code, Is.Zero, train.Err);
        var eval = Run("eval", "--checkpoint", model, "--data", val, "--device", "cpu", "--json");
        Assert.That(eval.Code, Is.Zero, eval.Err);
        var result = JsonDocument.Parse(eval.Out).RootElement;
        double exact = result.GetProperty("exact_match").GetDouble(), tokens = result.GetProperty("token_accuracy").GetDouble();
        TestContext.Out.WriteLine($"LSTM H=64, {Steps} steps: exact match {exact:P1}, token accuracy {tokens:P1} on the 400 held-out dates");
        Assert.That(exact, Is.GreaterThanOrEqualTo(MinimumExactMatch));
    }

    private const int Steps = 1000;

    private const double MinimumExactMatch = 0.5;
}
