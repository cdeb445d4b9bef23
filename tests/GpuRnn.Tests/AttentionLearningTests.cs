using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using NUnit.Framework;

namespace GpuRnn.Tests;

/// <summary>The dates task of <c>examples/make_pairs.py</c> in a test folder, and the greedy-decoding score of a model on it.</summary>
internal static class DatesTask
{
    /// <summary>Held-out pairs: the tail of the data that <c>--val-fraction 0.02</c> keeps out of training.</summary>
    public const int HeldOut = 400;

    /// <summary>Writes <c>make_pairs.py dates 20000 1</c> to <paramref name="pairs"/> and its held-out tail to <paramref name="val"/>.</summary>
    public static void Write(string pairs, string val)
    {
        string script = Path.Combine(TestData.RepoRoot(), "examples", "make_pairs.py");
        var psi = new ProcessStartInfo("python3", $"\"{script}\" dates 20000 1") { RedirectStandardOutput = true };
        using (var process = Process.Start(psi)!)
        {
            File.WriteAllText(pairs, process.StandardOutput.ReadToEnd());
            process.WaitForExit();
            Assert.That(process.ExitCode, Is.Zero, "make_pairs.py");
        }
        File.WriteAllLines(val, File.ReadAllLines(pairs)[^HeldOut..]);
    }

    /// <summary>The arguments of a dates training run of <paramref name="steps"/> steps on the CPU accelerator, before the model's own flags.</summary>
    public static string[] TrainArgs(string pairs, string model, int steps) =>
        ["train", "--mode", "pairs", "--data", pairs, "--steps", steps.ToString(CultureInfo.InvariantCulture), "--val-fraction", "0.02",
         "--device", "cpu", "--json", "--out", model];

    /// <summary>Exact match and token accuracy of <c>gpurnn eval --json</c> (greedy decoding) on <paramref name="val"/>.</summary>
    public static (double Exact, double Tokens) Score(Func<string[], (int Code, string Out, string Err)> run, string model, string val)
    {
        var eval = run(["eval", "--checkpoint", model, "--data", val, "--device", "cpu", "--json"]);
        Assert.That(eval.Code, Is.Zero, eval.Err);
        var result = JsonDocument.Parse(eval.Out).RootElement;
        return (result.GetProperty("exact_match").GetDouble(), result.GetProperty("token_accuracy").GetDouble());
    }
}

/// <summary>
/// The attention recipe of the README on the dates task, through the command line: a GRU encoder–decoder with
/// Luong dot attention gets the held-out dates exactly right (the LSTM without attention,
/// <see cref="DatesLearningTests"/>, reaches 76.5% after 1000 steps of 32 pairs). Measured here (2026-12-01, the same
/// flags through `gpurnn train`, seed 1, stopped and resumed exactly; docs/RESULTS-issue11.md): validation loss per token
/// 0.54 at step 800, 0.35 at 1000, 0.042 at 1400, 0.0097 at 2200; greedy exact match on the 400 held-out dates 4.5% at
/// 800, 90.5% at 1672 and 97.0% (token accuracy 99.6%) at 2200, about 25 minutes of a 2-core CPU alone. With B = 32 and
/// lr 0.01 the same model was at 7.75% after 1500 steps (an hour).
/// </summary>
[Category("Learning")]
[Explicit("about 25 minutes on a 2-core CPU (measured: 97.0% exact match at these 2200 steps)")]
public sealed class AttentionLearningTests : CliHarness
{
    [Test]
    public void GruWithDotAttentionGetsDatesExactlyRight()
    {
        string pairs = P("dates.tsv"), model = P("dates.safetensors"), val = P("val.tsv");
        DatesTask.Write(pairs, val);
        var train = Run([.. DatesTask.TrainArgs(pairs, model, Steps), "--cell", "gru", "--attention", "dot", "--hidden", "64", "--layers", "1",
            "--batch", "8", "--lr", "0.005", "--eval-every", "0"]);
        Assert.That(train.Code, Is.Zero, train.Err);
        var (exact, tokens) = DatesTask.Score(Run, model, val);
        TestContext.Out.WriteLine($"GRU H=64, dot attention, {Steps} steps: exact match {exact:P1}, token accuracy {tokens:P1} on the {DatesTask.HeldOut} held-out dates");
        Assert.That(exact, Is.GreaterThanOrEqualTo(MinimumExactMatch));
    }

    private const int Steps = 2200;

    private const double MinimumExactMatch = 0.95;
}
