using System.Text.Json;
using GpuRnn.Checkpoints;
using GpuRnn.Cli;
using NUnit.Framework;
using ScottPlot;
using Spectre.Console;
using Spectre.Console.Testing;

namespace GpuRnn.Tests;

/// <summary>The live status line, the JSON progress records, the run's history and its plot (issue 13, part 3).</summary>
public sealed class DisplayTests : CliHarness
{
    /// <summary>A clock that moves only when told, for exact rates.</summary>
    private sealed class ManualClock : TimeProvider
    {
        private long ticks;
        public override long TimestampFrequency => 1_000_000;
        public override long GetTimestamp() => ticks;
        public void Advance(double seconds) => ticks += (long)Math.Round(seconds * TimestampFrequency);
    }

    private static ClassifierMetrics Metrics(string rare) =>
        new(["common-class", rare], new long[,] { { 90, 3 }, { 4, 3 } }, loss: 0.3);

    private static TrainingSet.Validation Validation(bool classifier, double loss) =>
        classifier ? new TrainingSet.Validation(loss, Metrics("rare"), TrainAccuracy: 0.97) : new TrainingSet.Validation(loss, null);

    /// <summary>
    /// A whole run drawn on a terminal of each width, replayed through a VT100 screen: the terminal never had to wrap
    /// a line (no drawn line was wider than the terminal), and the screen ends with the line written before, the blank
    /// separator row and the final status line, nothing else: no frame was left behind and none overwrote the line above.
    /// </summary>
    [Test]
    public void LiveLineFitsTheWidthAndLeavesNothingBehind([Values(60, 80, 120)] int width, [Values] bool classifier)
    {
        var console = new TestConsole().Width(width).Height(24).Interactive().EmitAnsiSequences().SupportsUnicode(true);
        var clock = new ManualClock();
        const long total = 3000;
        var reporter = new Reporter(TextWriter.Null, json: false, logPath: null, total, tokensPerStep: 64 * 256, new TrainingHistory(), console, clock);
        console.WriteLine("the line above");
        reporter.Run(() =>
        {
            for (long step = 1; step <= total; step++)
            {
                clock.Advance(0.037);
                if (step % 500 == 0)
                {
                    reporter.Untimed(() => clock.Advance(20));
                    reporter.Validated(step, Validation(classifier, 1.234567 + 1.0 / step));
                }
                reporter.Step(step, 4.0 / Math.Sqrt(step), 4.1 / Math.Sqrt(step));
            }
            return 0;
        });
        var screen = new TerminalScreen(width);
        screen.Write(console.Output);
        Assert.That(screen.Wraps, Is.Zero, "a drawn line reached past the last column");
        Assert.That(screen.Rows, Has.Count.EqualTo(3), string.Join("\n", screen.Rows));
        Assert.That(screen.Rows[0], Is.EqualTo("the line above"));
        Assert.That(screen.Rows[1], Is.Empty);
        string final = screen.Rows[2];
        Assert.That(final.GetCellWidth(), Is.LessThan(width));
        Assert.That(final, Does.Contain("3000/3000").And.Contain("eta 0:00"));
        Assert.That(final, classifier ? Does.Contain("val ").And.Not.Contain("ppl") : Does.Contain("val 1.2"));
        if (width >= 120)
            Assert.That(final, classifier ? Does.Contain("val acc 93.0%").And.Contain("F1(rare) 0.462").And.Contain("train acc 97.0%") : Does.Contain("ppl 3.4"));
    }

    /// <summary>Every field list fits every width from 12 to 200; the most important field is never dropped.</summary>
    [Test]
    public void StatusLineShortensThenDropsByPriority()
    {
        var fields = new List<StatusField>
        {
            new("42%", null, 6), new("step 2100/5000", "2100/5000", 1), new("loss 1.4321", "loss 1.43", 2),
            new("val 1.5012", "val 1.50", 4), new("ppl 4.49", null, 8), new("8,532 tok/s", "8.53k tok/s", 7), new("eta 3:12", null, 3),
        };
        for (int width = 12; width <= 200; width++)
        {
            var (bar, text) = StatusLine.Fit(fields, width);
            Assert.That(text.GetCellWidth() + (bar > 0 ? bar + 1 : 0), Is.LessThan(width), $"width {width}: {text}");
            Assert.That(text, Does.Contain("2100/5000"), $"width {width}");
        }
        Assert.That(StatusLine.Fit(fields, 120), Is.EqualTo((30, "42% step 2100/5000 loss 1.4321 val 1.5012 ppl 4.49 8,532 tok/s eta 3:12")));
        Assert.That(StatusLine.Fit(fields, 60), Is.EqualTo((0, "42% 2100/5000 loss 1.43 val 1.50 8.53k tok/s eta 3:12")), "every short form, then ppl goes");
        Assert.That(StatusLine.Fit(fields, 40).Text, Is.EqualTo("2100/5000 loss 1.43 val 1.50 eta 3:12"), "short forms first, then ppl, tok/s and % go");
        Assert.That(StatusLine.Fit(fields, 5).Text, Is.EqualTo("2100"), "the last field is cropped");
    }

    /// <summary>
    /// --json: tokens/s counts training time only. Steps take 0.5 s of training; a validation pass of 100 s and a
    /// checkpoint save of 30 s in between change neither the rate nor anything but the ETA, which includes them
    /// (amortised over the steps so far).
    /// </summary>
    [Test]
    public void JsonTokensPerSecondLeaveOutValidationAndSaving()
    {
        var stdout = new StringWriter();
        var clock = new ManualClock();
        const int tokensPerStep = 1000;
        var reporter = new Reporter(stdout, json: true, logPath: null, total: 10, tokensPerStep, new TrainingHistory(), time: clock);
        reporter.Run(() =>
        {
            for (long step = 1; step <= 10; step++)
            {
                clock.Advance(step == 1 ? 5 : 0.5); // the first step compiles the kernels: left out of the rate too
                if (step == 4)
                {
                    reporter.Untimed(() => clock.Advance(100));
                    reporter.Validated(step, Validation(classifier: false, 2.0));
                    reporter.Untimed(() => clock.Advance(30));
                }
                reporter.Step(step, 2.5, 2.5);
            }
            return 0;
        });
        var records = stdout.ToString().Trim().Split('\n').Select(l => JsonDocument.Parse(l).RootElement).ToList();
        var afterValidation = records.Single(r => r.GetProperty("val_loss").ValueKind == JsonValueKind.Number);
        Assert.That(afterValidation.GetProperty("step").GetInt64(), Is.EqualTo(4));
        Assert.That(afterValidation.GetProperty("tokens_per_s").GetDouble(), Is.EqualTo(tokensPerStep / 0.5).Within(1e-6));
        Assert.That(afterValidation.GetProperty("eta_s").GetDouble(), Is.EqualTo(6 * (3 * 0.5 + 130) / 3).Within(1e-6));
        Assert.That(afterValidation.GetProperty("elapsed_s").GetDouble(), Is.EqualTo(5 + 3 * 0.5 + 130).Within(1e-6));
        var last = records[^1];
        Assert.That(last.GetProperty("step").GetInt64(), Is.EqualTo(10));
        Assert.That(last.GetProperty("tokens_per_s").GetDouble(), Is.EqualTo(tokensPerStep / 0.5).Within(1e-6));
        Assert.That(reporter.TokensPerSecond, Is.EqualTo(tokensPerStep / 0.5).Within(1e-6));
    }

    /// <summary>The history keeps every step while it can, then buckets of equal size holding their exact means.</summary>
    [Test]
    public void HistoryKeepsEqualBucketsOfExactMeans()
    {
        var history = new TrainingHistory();
        for (long step = 1; step <= 7; step++)
            history.AddStep(step, step);
        Assert.That(history.Train.Select(p => p.Step), Is.EqualTo(new long[] { 1, 2, 3, 4, 5, 6, 7 }));
        const long steps = 100_003;
        for (long step = 8; step <= steps; step++)
            history.AddStep(step, step); // the loss is the step: a bucket's mean is its centre
        Assert.That(history.Train, Has.Count.InRange(TrainingHistory.MaxPoints / 2, TrainingHistory.MaxPoints));
        Assert.That(history.Stride, Is.EqualTo(32), "100,003 steps in at most 4,000 buckets: 2⁵ steps each");
        Assert.That(history.Train.Take(history.Train.Count - 1).All(p => p.Steps == history.Stride), Is.True);
        Assert.That(history.Train[^1].Step, Is.EqualTo(steps));
        Assert.That(history.Train.Sum(p => p.Steps), Is.EqualTo(steps));
        foreach (var p in history.Train)
            Assert.That(p.Loss, Is.EqualTo(p.Center).Within(1e-9 * p.Center), $"bucket ending at {p.Step}");
        Assert.Throws<ArgumentOutOfRangeException>(() => history.AddStep(steps, 1));
    }

    /// <summary>
    /// Through the runner: a run stopped at step 6 and resumed to 12 has, in its checkpoint, the training loss of every
    /// step from 1 and every validation pass, the first six exactly as the first run wrote them; the plot covers them.
    /// </summary>
    [Test]
    public void HistorySurvivesResume()
    {
        var first = Train("--data", Data, "--steps", "6", "--eval-every", "3", "--val-fraction", "0.2", "--out", P("m.safetensors"));
        Assert.That(first.Code, Is.EqualTo(0), first.Err);
        var before = Checkpoint.Load(P("m.safetensors")).History!;
        Assert.That(before.Train.Select(p => p.Step), Is.EqualTo(new long[] { 1, 2, 3, 4, 5, 6 }));
        Assert.That(before.Evaluations.Select(p => p.Step), Is.EqualTo(new long[] { 3, 6 }), "the end-of-run pass at step 6 is the scheduled one");

        var resumed = Run("train", "--device", "cpu", "--resume", P("m.safetensors"), "--data", Data, "--steps", "12", "--eval-every", "3", "--length", "0");
        Assert.That(resumed.Code, Is.EqualTo(0), resumed.Err);
        var after = Checkpoint.Load(P("m.safetensors")).History!;
        Assert.That(after.Train.Select(p => p.Step), Is.EqualTo(Enumerable.Range(1, 12).Select(i => (long)i)));
        Assert.That(after.Train.Take(6).Select(p => p.Loss), Is.EqualTo(before.Train.Select(p => p.Loss)));
        Assert.That(after.Evaluations.Select(p => p.Step), Is.EqualTo(new long[] { 3, 6, 9, 12 }));
        Assert.That(after.Evaluations.All(p => double.IsFinite(p.Loss) && p.Accuracy is null), Is.True);

        using var plot = LossPlot.Build(after, classifier: false);
        var lines = plot.GetPlottables().OfType<ScottPlot.Plottables.Scatter>().ToList();
        Assert.That(lines.Select(s => s.LegendText), Is.EqualTo(new[] { "training (per step)", "training, smoothed (3 steps)", "validation" }));
        Assert.That(lines[0].Data.GetScatterPoints().Select(p => p.X), Is.EqualTo(Enumerable.Range(1, 12).Select(i => (double)i)), "from step 1, not the resume step");
        Assert.That(lines[2].Data.GetScatterPoints().Select(p => p.X), Is.EqualTo(new double[] { 3, 6, 9, 12 }));
    }

    /// <summary>
    /// One validation pass still shows (a marker, since a line needs two points); a classifier's accuracy goes on the
    /// right axis; the legend sits outside the data area, where it cannot hide the last point.
    /// </summary>
    [Test]
    public void PlotMarksEveryValidationAndPutsAccuracyOnTheRightAxis()
    {
        var history = new TrainingHistory();
        for (long step = 1; step <= 40; step++)
            history.AddStep(step, 3.0 / step);
        history.AddEvaluation(new EvaluationPoint(40, 0.5, 0.8, 0.9));
        using var plot = LossPlot.Build(history, classifier: true);
        var series = plot.GetPlottables().OfType<ScottPlot.Plottables.Scatter>().ToDictionary(s => s.LegendText);
        Assert.That(series.Keys, Is.EquivalentTo(new[] { "training (per step)", "training, smoothed (3 steps)", "validation", "validation accuracy", "training accuracy (sample)" }));
        Assert.That(series["validation"].Data.GetScatterPoints().Single(), Is.EqualTo(new Coordinates(40, 0.5)));
        Assert.That(series["validation"].MarkerSize, Is.GreaterThan(0));
        Assert.That(series["validation accuracy"].Axes.YAxis, Is.SameAs(plot.Axes.Right));
        Assert.That(series["training accuracy (sample)"].Data.GetScatterPoints().Single(), Is.EqualTo(new Coordinates(40, 0.9)));
        Assert.That(series["validation"].Axes.YAxis, Is.Not.SameAs(plot.Axes.Right));
        Assert.That(plot.Legend.IsVisible, Is.False, "no legend inside the data area");
        Assert.That(plot.Axes.GetPanels().OfType<ScottPlot.Panels.LegendPanel>(), Is.Not.Empty, "the legend is a panel beside it");

        using var lm = LossPlot.Build(history, classifier: false);
        Assert.That(lm.GetPlottables().OfType<ScottPlot.Plottables.Scatter>().Count(s => s.Axes.YAxis == lm.Axes.Right), Is.Zero);
    }

    [Test]
    public void SmoothingIsACentredMeanThatKeepsALine() =>
        Assert.That(LossPlot.Smooth([1, 2, 3, 4, 5, 6], 3), Is.EqualTo(new[] { 1.5, 2, 3, 4, 5, 5.5 }));

    /// <summary>A classifier's plain progress lines show accuracy and the rarer class's F1, not perplexity; the summary adds the training accuracy.</summary>
    [Test]
    public void ClassifierProgressShowsAccuracyNotPerplexity()
    {
        File.WriteAllText(P("cls.tsv"), string.Concat(Enumerable.Range(0, 40).Select(i => i % 4 == 0 ? $"spam\twin cash now {i % 3}\n" : $"ham\tsee you at {i % 5}\n")));
        var r = Train("--mode", "labeled", "--tokenizer", "word", "--data", P("cls.tsv"), "--steps", "4", "--eval-every", "2", "--val-fraction", "0.25", "--batch", "4",
            "--out", P("cls.safetensors"));
        Assert.That(r.Code, Is.EqualTo(0), r.Err);
        var progress = r.Out.Split('\n').Where(l => l.Contains("step 2/4") || l.Contains("step 4/4")).ToList();
        Assert.That(progress, Has.Count.EqualTo(2), r.Out);
        foreach (string line in progress)
        {
            Assert.That(line, Does.Contain("val acc ").And.Contain("F1(spam) ").And.Contain("train acc "));
            Assert.That(line, Does.Not.Contain("ppl"));
        }
        Assert.That(r.Out, Does.Contain("train_accuracy"));
        var history = Checkpoint.Load(P("cls.safetensors")).History!;
        Assert.That(history.Evaluations.Select(e => (e.Step, e.Accuracy is not null, e.TrainAccuracy is not null)), Is.EqualTo(new[] { (2L, true, true), (4L, true, true) }));
    }

    [Test]
    public void TrainingSampleSpreadsOverTheFile()
    {
        Assert.That(TrainingSet.TrainingSample(1000, 10), Has.Length.EqualTo(256));
        Assert.That(TrainingSet.TrainingSample(1000, 10)[^1], Is.GreaterThan(990), "to the end of the file, which may be sorted by label");
        Assert.That(TrainingSet.TrainingSample(100, 10), Is.EqualTo(Enumerable.Range(0, 100)));
        Assert.That(TrainingSet.TrainingSample(2000, 500), Has.Length.EqualTo(500));
    }

    /// <summary>Every field `eval --json` writes, in every mode, is documented in `eval --help`.</summary>
    [Test]
    public void EvalHelpDocumentsEveryModesJsonFields()
    {
        string help = Run("eval", "--help").Out;
        string Squeeze(string s) => string.Join(" ", s.Split((char[])[' ', '\n'], StringSplitOptions.RemoveEmptyEntries));
        help = Squeeze(help);
        File.WriteAllText(P("lines.txt"), "ab\nabc\nbca\ncab\n");
        File.WriteAllText(P("cls.tsv"), "pos\tgood fun\nneg\tbad day\npos\tfun fun\nneg\tbad\n");
        File.WriteAllText(P("pairs.tsv"), "ab\tba\nabc\tcba\nbca\tacb\ncab\tbac\n");
        foreach (var (mode, data) in new[] { ("stream", Data), ("lines", P("lines.txt")), ("labeled", P("cls.tsv")), ("pairs", P("pairs.tsv")) })
        {
            Assert.That(help, Does.Contain($"{mode} "), mode);
            string model = P($"{mode}.safetensors");
            var t = Train("--mode", mode, "--data", data, "--steps", "1", "--val-fraction", "0", "--seq-len", "4", "--out", model);
            Assert.That(t.Code, Is.EqualTo(0), t.Err);
            var e = Run("eval", model, "--data", data, "--device", "cpu", "--json");
            Assert.That(e.Code, Is.EqualTo(0), e.Err);
            foreach (var field in JsonDocument.Parse(e.Out).RootElement.EnumerateObject())
                Assert.That(help, Does.Contain($"\"{field.Name}\""), $"{mode}: field {field.Name}");
        }
    }

    /// <summary>sample, eval, predict and info take the checkpoint positionally or as --checkpoint; neither, or two different, is a usage error.</summary>
    [Test]
    public void EveryCommandTakesTheCheckpointPositionally()
    {
        Assert.That(Train("--data", Data, "--steps", "1", "--out", P("m.safetensors")).Code, Is.EqualTo(0));
        string m = P("m.safetensors");
        File.WriteAllText(P("in.txt"), "Fir\n");
        foreach (var args in new[] { new[] { "info" }, ["sample", "--device", "cpu", "--length", "5"], ["eval", "--data", Data, "--device", "cpu"], ["predict", "--input", P("in.txt"), "--device", "cpu", "--length", "3"] })
        {
            var positional = Run([args[0], m, .. args[1..]]);
            var flag = Run([args[0], "--checkpoint", m, .. args[1..]]);
            Assert.That(positional.Code, Is.EqualTo(0), $"{args[0]}: {positional.Err}");
            Assert.That(positional.Out, Is.EqualTo(flag.Out), args[0]);
            var neither = Run(args);
            Assert.That(neither.Code, Is.EqualTo(ExitCodes.Usage), args[0]);
            Assert.That(neither.Err, Does.Contain($"{args[0]} needs a checkpoint: gpurnn {args[0]} FILE (or --checkpoint FILE)"));
            var two = Run([args[0], m, "--checkpoint", P("other.safetensors"), .. args[1..]]);
            Assert.That(two.Code, Is.EqualTo(ExitCodes.Usage), args[0]);
            Assert.That(two.Err, Does.Contain("two checkpoints given"));
        }
    }

    /// <summary>
    /// One name, --length, for the tokens generated by train, sample and predict; each --help gives its temperature's
    /// default and why; train's preview uses its --temperature (at 0, greedy: exactly what `sample --temperature 0` gives).
    /// </summary>
    [Test]
    public void SamplingDefaultsAreOneNameAndExplained()
    {
        foreach (var (command, temperature, length) in new[] { ("train", "0.8", "300"), ("sample", "1", "500"), ("predict", "0", "100") })
        {
            string help = Run(command, "--help").Out;
            Assert.That(help, Does.Contain("--length").And.Not.Contain("--sample-length"), command);
            Assert.That(help, Does.Contain($"[default: {length}]"), command);
            Assert.That(help, Does.Match($@"--temperature[^\[]*The default {temperature.Replace(".", "\\.")} [^\[]*\[default: {temperature.Replace(".", "\\.")}\]"), command);
        }
        var train = Run(["train", .. Merge(Tiny, ["--data", Data, "--steps", "3", "--length", "40", "--temperature", "0", "--out", P("m.safetensors")])]);
        Assert.That(train.Code, Is.EqualTo(0), train.Err);
        var sample = Run("sample", P("m.safetensors"), "--device", "cpu", "--length", "40", "--temperature", "0");
        Assert.That(train.Out, Does.Contain("sample (temperature 0):\n" + sample.Out));
    }
}
