using System.Text.Json;
using GpuRnn.Checkpoints;
using NUnit.Framework;

namespace GpuRnn.Tests;

/// <summary>Dropout, learning-rate schedules, --keep-best and --early-stop through the real command line.</summary>
public sealed class TrainingFeatureCliTests : CliHarness
{
    private static void AssertSameWeights(string a, string b, bool same = true)
    {
        var x = Checkpoint.Load(a);
        var y = Checkpoint.Load(b);
        bool equal = x.Weights.All(kv => kv.Value.AsSpan().SequenceEqual(y.Weights[kv.Key]));
        Assert.That(equal, Is.EqualTo(same), same ? $"{a} and {b} must hold bit-identical weights" : $"{a} and {b} must differ");
    }

    /// <summary>The JSON objects of a --json run's stdout.</summary>
    private static List<JsonElement> Lines(string stdout) =>
        stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();

    [Test]
    public void DropoutZeroIsTrainingWithoutDropoutAndDropoutIsSaved()
    {
        string[] run = ["--data", Data, "--layers", "2", "--steps", "6"];
        Assert.That(Train([.. run, "--out", P("plain.safetensors")]).Code, Is.Zero);
        Assert.That(Train([.. run, "--dropout", "0", "--out", P("zero.safetensors")]).Code, Is.Zero);
        AssertSameWeights(P("plain.safetensors"), P("zero.safetensors"));
        var (code, output, _) = Train([.. run, "--dropout", "0.3", "--out", P("drop.safetensors")]);
        Assert.That(code, Is.Zero);
        Assert.That(output, Does.Contain("dropout=0.3"));
        AssertSameWeights(P("plain.safetensors"), P("drop.safetensors"), same: false);
        Assert.That(Checkpoint.Load(P("drop.safetensors")).Config.Dropout, Is.EqualTo(0.3f), "saved in gpurnn.config");
        Assert.That(Checkpoint.Load(P("plain.safetensors")).Config.Dropout, Is.Zero);
        Assert.That(Run("info", "--checkpoint", P("drop.safetensors")).Out, Does.Contain("dropout:    0.3 (training only)"));
    }

    /// <summary>
    /// 16 steps in one run, and 8 steps then --resume to 16, give bit-identical weights and schedule state for every
    /// schedule, with dropout on (its masks are keyed by the update number, so they continue too). The schedules move the rate.
    /// The first half plans the cosine over 16 steps (--cosine-steps 16); the resumed run validates as often (--eval-every is a run setting).
    /// </summary>
    [Test]
    public void ResumeIsExactForEverySchedule([Values("constant", "step", "cosine", "plateau")] string schedule)
    {
        string[] run = ["--data", Data, "--layers", "2", "--dropout", "0.2", "--lr", "0.05", "--eval-every", "2", "--val-fraction", "0.2", "--lr-schedule", schedule, "--json"];
        if (schedule != "constant")
            run = [.. run, "--lr-decay", "0.5", "--lr-decay-every", "3", "--plateau-patience", "0"]; // these belong to the other schedules
        var whole = Train([.. run, "--steps", "16", "--out", P("whole.safetensors")]);
        Assert.That(whole.Code, Is.Zero, whole.Err);
        Assert.That(Train([.. run, "--steps", "8", .. schedule == "cosine" ? ["--cosine-steps", "16"] : Array.Empty<string>(), "--out", P("half.safetensors")]).Code, Is.Zero);
        var resumed = Run("train", "--device", "cpu", "--resume", P("half.safetensors"), "--data", Data, "--steps", "16", "--eval-every", "2", "--length", "0", "--json");
        Assert.That(resumed.Code, Is.Zero, resumed.Err);
        AssertSameWeights(P("whole.safetensors"), P("half.safetensors"));
        var a = Checkpoint.Load(P("whole.safetensors")).Training!;
        var b = Checkpoint.Load(P("half.safetensors")).Training!;
        Assert.That(b, Is.EqualTo(a), "the whole training state, the schedule's included");

        var rates = Lines(whole.Out).Where(e => e.TryGetProperty("step", out _) && e.TryGetProperty("lr", out _)).Select(e => e.GetProperty("lr").GetSingle()).ToList();
        Assert.That(rates, Is.Not.Empty, "the JSON step lines carry the rate");
        Assert.That(rates.Distinct().Count(), schedule == "constant" ? Is.EqualTo(1) : Is.GreaterThan(1), $"{schedule}: rates {string.Join(", ", rates)}");
        if (schedule == "plateau")
            Assert.That(a.Reductions, Is.GreaterThan(0));
        if (schedule != "constant")
            Assert.That(Run("info", "--checkpoint", P("whole.safetensors")).Out, Does.Contain($"schedule:   {schedule}: "));
    }

    /// <summary>
    /// --early-stop 2 with a rate too high to keep improving: stops (exit 0) with a message, keeps the last checkpoint (with
    /// resume state) and the best one (weights only), both complete; the best holds other weights than the last.
    /// </summary>
    [Test]
    public void EarlyStopKeepsTheLastAndTheBest()
    {
        var (code, output, error) = Train("--data", Data, "--steps", "300", "--lr", "0.05", "--eval-every", "1", "--val-fraction", "0.2",
            "--keep-best", "--early-stop", "2", "--out", P("m.safetensors"));
        Assert.That(code, Is.Zero, error);
        Assert.That(output, Does.Contain("early stop at step").And.Contain("2 evaluations without a new best").And.Contain(P("m.best.safetensors")));
        var last = Checkpoint.Load(P("m.safetensors"));
        var best = Checkpoint.Load(P("m.best.safetensors"));
        Assert.That(last.Training!.Step, Is.LessThan(300), "stopped early");
        Assert.That(last.Training.EvaluationsSinceBest, Is.EqualTo(2));
        Assert.That(best.Training, Is.Null, "the best model is weights only");
        AssertSameWeights(P("m.safetensors"), P("m.best.safetensors"), same: false);
        Assert.That(Directory.GetFiles(Dir, "*.tmp"), Is.Empty, "no half-written file is left");
        Assert.That(Run("eval", "--checkpoint", P("m.best.safetensors"), "--data", Data, "--device", "cpu").Code, Is.Zero, "the best model is usable");
    }

    [Test]
    public void BadSettingsAreOneLineErrors()
    {
        AssertOneLineError(Train("--data", Data, "--dropout", "1", "--steps", "2"), "--dropout must be in [0, 1)");
        AssertOneLineError(Train("--data", Data, "--keep-best", "--val-fraction", "0", "--steps", "2"), "--keep-best needs validation loss");
        AssertOneLineError(Train("--data", Data, "--early-stop", "-1", "--steps", "2"), "--early-stop must be");
        AssertOneLineError(Train("--data", Data, "--lr-schedule", "linear", "--steps", "2"), "--lr-schedule linear", "constant, step, cosine or plateau");
        AssertOneLineError(Train("--data", Data, "--lr-schedule", "step", "--lr-decay", "1.5", "--steps", "2"), "--lr-decay must be in (0, 1)");
        Assert.That(Train("--data", Data, "--steps", "2", "--out", P("a.safetensors")).Code, Is.Zero);
        AssertOneLineError(Run("train", "--device", "cpu", "--resume", P("a.safetensors"), "--data", Data, "--steps", "4", "--lr-schedule", "cosine"), "--lr-schedule cosine conflicts with");
        AssertOneLineError(Run("train", "--device", "cpu", "--resume", P("a.safetensors"), "--data", Data, "--steps", "4", "--dropout", "0.5"), "--dropout 0.5 conflicts with");
    }
}
