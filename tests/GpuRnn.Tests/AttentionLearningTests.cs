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
/// Luong dot attention gets the held-out dates exactly right where the LSTM without attention
/// (<see cref="DatesLearningTests"/>) reaches 76.5% after 1000 steps. Not yet seen to pass: measured here
/// (2026-12-01, the same flags through `gpurnn train` and `gpurnn eval`, on the 2-core CPU accelerator shared with
/// other work), 748 steps took 46 minutes wall and 40 CPU-minutes (3.2 CPU-s per step) and reached 5.5% exact
/// match and 83.6% token accuracy on the 400 held-out dates (validation loss per token 1.05 at step 100, 0.86 at
/// 200, 0.68 at 400, 0.47 at 600, 0.41 at 700, still falling); at 1000 steps (53 CPU-minutes) 4.75% and 84.8%, loss 0.34; at 1500 steps (the same seeded run resumed, 2.4 s per
/// step on the idle machine) 7.75% and 85.9%, loss 0.317 — this test FAILS today; the recipe (or the model) needs
/// more than these steps, left to a longer run or a GPU (docs/RESULTS-issue11.md).
/// </summary>
[Category("Learning")]
[Explicit("fails today: the seeded run reaches 7.75% exact match at these 1500 steps (about an hour on a 2-core CPU); kept as issue 11's goal")]
public sealed class AttentionLearningTests : CliHarness
{
    [Test]
    public void GruWithDotAttentionGetsDatesExactlyRight()
    {
        string pairs = P("dates.tsv"), model = P("dates.safetensors"), val = P("val.tsv");
        DatesTask.Write(pairs, val);
        var train = Run([.. DatesTask.TrainArgs(pairs, model, Steps), "--cell", "gru", "--attention", "dot", "--hidden", "64", "--layers", "1",
            "--batch", "32", "--lr", "0.01", "--eval-every", "0"]);
        Assert.That(train.Code, Is.Zero, train.Err);
        var (exact, tokens) = DatesTask.Score(Run, model, val);
        TestContext.Out.WriteLine($"GRU H=64, dot attention, {Steps} steps: exact match {exact:P1}, token accuracy {tokens:P1} on the {DatesTask.HeldOut} held-out dates");
        Assert.That(exact, Is.GreaterThanOrEqualTo(MinimumExactMatch));
    }

    private const int Steps = 1500;

    private const double MinimumExactMatch = 0.95;
}
