using System.Globalization;
using System.Text.Json;
using GpuRnn.Checkpoints;
using Spectre.Console;

namespace GpuRnn.Cli;

/// <summary>
/// Where training progress goes: one live status line on an interactive terminal (fitted to its width: see
/// <see cref="StatusLine"/>), plain lines (no control characters) when stdout is redirected, JSON lines with --json,
/// and every step as a JSON object in the --log file. Keeps the run's curves (<see cref="History"/>) for the plot
/// and the checkpoint, and two clocks: the wall clock, and the training clock, which leaves out what runs inside
/// <see cref="Untimed{T}"/> (validation, checkpoint saving), so that tokens/s is the training's own speed.
/// </summary>
internal sealed class Reporter
{
    /// <summary>The live line is redrawn at most this often (a GPU takes thousands of steps a second).</summary>
    private const double RefreshSeconds = 0.1;

    private readonly TextWriter stdout;
    private readonly bool json;
    private readonly StreamWriter? log;
    private readonly long total;
    private readonly int tokensPerStep;
    private readonly long every;
    private readonly IAnsiConsole? console;
    private readonly TimeProvider time;
    private long started;
    private double untimed; // seconds inside Untimed
    private int untimedDepth;
    private LiveDisplayContext? live;
    private double lastDraw = double.NegativeInfinity;
    private (int Width, int Bar) barFit; // the bar only shrinks while the width stays, so it does not jitter as the text grows
    // The rate is measured from the end of this run's first step: that step includes compiling the kernels.
    private long baseStep = -1;
    private double baseTraining, baseWall;
    private TrainingSet.Validation? lastValidation;
    private long lastValidationStep = -1;
    private (long Step, double Loss, double Smoothed) last;

    /// <param name="stdout">Plain and JSON lines.</param>
    /// <param name="json">JSON lines instead of the status line.</param>
    /// <param name="logPath">The per-step JSON log, appended to; null for none.</param>
    /// <param name="total">The run's last step.</param>
    /// <param name="tokensPerStep">Positions per training window (for tokens/s).</param>
    /// <param name="history">The curves so far: a resumed run's, or a new one.</param>
    /// <param name="liveConsole">Draw the live line on this console; null: on the terminal when stdout is one.</param>
    /// <param name="time">The clock (a test's fake one).</param>
    public Reporter(TextWriter stdout, bool json, string? logPath, long total, int tokensPerStep, TrainingHistory history,
        IAnsiConsole? liveConsole = null, TimeProvider? time = null)
    {
        this.stdout = stdout;
        this.json = json;
        this.total = total;
        this.tokensPerStep = tokensPerStep;
        this.time = time ?? TimeProvider.System;
        History = history;
        started = this.time.GetTimestamp();
        every = Math.Max(1, total / 50);
        console = liveConsole ?? (!json && ReferenceEquals(stdout, Console.Out) && !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive
            ? AnsiConsole.Console : null);
        if (logPath is not null)
        {
            try
            {
                string? folder = Path.GetDirectoryName(Path.GetFullPath(logPath));
                if (folder is not null)
                    Directory.CreateDirectory(folder);
                log = new StreamWriter(logPath, append: true) { AutoFlush = true };
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new GpuRnnException($"--log {logPath}: cannot write: {e.Message.Split('\n')[0]}", e);
            }
        }
    }

    /// <summary>True when a live display is drawn.</summary>
    public bool Interactive => console is not null;

    /// <summary>The run's curves from its first step (a resumed run's included).</summary>
    public TrainingHistory History { get; }

    /// <summary>Seconds since <see cref="Run{T}"/> began.</summary>
    public double WallSeconds => time.GetElapsedTime(started).TotalSeconds;

    /// <summary>Seconds of training: <see cref="WallSeconds"/> less the time spent inside <see cref="Untimed{T}"/>.</summary>
    public double TrainingSeconds => WallSeconds - untimed;

    /// <summary>Training tokens (window positions) per second of training time, from the end of this run's first step on (NaN before any step).</summary>
    public double TokensPerSecond
    {
        get
        {
            if (baseStep < 0)
                return double.NaN;
            return last.Step > baseStep
                ? (last.Step - baseStep) * (double)tokensPerStep / Math.Max(TrainingSeconds - baseTraining, 1e-9)
                : tokensPerStep / Math.Max(baseTraining, 1e-9);
        }
    }

    /// <summary>
    /// Seconds left: the steps left at this run's pace since its first step, validation and saving included; NaN until
    /// a second step (the first one's time is mostly compiling the kernels), 0 at the last step.
    /// </summary>
    public double EtaSeconds =>
        last.Step >= total ? 0 : baseStep < 0 || last.Step == baseStep ? double.NaN : (total - last.Step) * (WallSeconds - baseWall) / (last.Step - baseStep);

    public void Start(string header)
    {
        if (json)
            stdout.WriteLine(JsonSerializer.Serialize(new { @event = "start", message = header }));
        else
            stdout.WriteLine(header);
    }

    /// <summary>Runs the training loop, inside a live display when interactive; the clocks start here.</summary>
    public T Run<T>(Func<T> body)
    {
        started = time.GetTimestamp();
        untimed = 0;
        if (console is null)
            return body();
        return console.Live(Text.Empty).AutoClear(false).Overflow(VerticalOverflow.Crop).Start(ctx =>
        {
            live = ctx;
            try
            {
                return body();
            }
            finally
            {
                Draw(force: true);
                live = null;
            }
        });
    }

    /// <summary>Runs <paramref name="work"/> off the training clock (validation, saving): it counts in the ETA, not in tokens/s.</summary>
    public T Untimed<T>(Func<T> work)
    {
        long begin = time.GetTimestamp();
        untimedDepth++;
        try
        {
            return work();
        }
        finally
        {
            if (--untimedDepth == 0)
                untimed += time.GetElapsedTime(begin).TotalSeconds;
        }
    }

    /// <inheritdoc cref="Untimed{T}(Func{T})"/>
    public void Untimed(Action work) => Untimed(() =>
    {
        work();
        return 0;
    });

    /// <summary>A validation pass after <paramref name="step"/>: kept in the history, shown from the next <see cref="Step"/> on.</summary>
    public void Validated(long step, TrainingSet.Validation v)
    {
        var point = new EvaluationPoint(step, v.Loss, v.Metrics?.Accuracy, v.TrainAccuracy);
        if (History.Evaluations.Count > 0 && History.Evaluations[^1].Step == step)
            return; // the end-of-run pass after a scheduled one at the same step
        History.AddEvaluation(point);
        lastValidation = v;
        lastValidationStep = step;
    }

    /// <summary>The learning rate of the update being reported (a schedule changes it).</summary>
    public float LearningRate { get; set; }

    /// <summary>Whether a schedule changes the rate: only then does the live line show it (the JSON record always has it).</summary>
    public bool Scheduled { get; set; }

    public void Step(long step, double loss, double smoothed)
    {
        History.AddStep(step, loss);
        last = (step, loss, smoothed);
        if (baseStep < 0)
            (baseStep, baseTraining, baseWall) = (step, TrainingSeconds, WallSeconds);
        bool validated = lastValidationStep == step;
        var record = Record(validated);
        log?.WriteLine(JsonSerializer.Serialize(record));
        if (console is not null)
            Draw(force: validated || step == total);
        else if (step % every == 0 || validated || step == total)
            stdout.WriteLine(json ? JsonSerializer.Serialize(record) : string.Join(" ", Fields().Skip(1).Select(f => f.Text))); // no percentage: lines start "step N/T"
    }

    private Dictionary<string, object?> Record(bool validated)
    {
        var v = validated ? lastValidation : null;
        var record = new Dictionary<string, object?>
        {
            ["step"] = last.Step,
            ["loss"] = last.Loss,
            ["smoothed_loss"] = last.Smoothed,
            ["lr"] = LearningRate,
            ["val_loss"] = v?.Loss,
        };
        if (v?.Metrics is { } m)
        {
            record["val_accuracy"] = m.Accuracy;
            record["train_accuracy"] = v.TrainAccuracy;
            for (int c = 0; c < m.Classes.Count; c++)
                record[$"val_f1_{m.Classes[c]}"] = m.F1(c);
        }
        else
        {
            record["val_perplexity"] = v is not null ? Math.Exp(v.Loss) : null;
        }
        record["tokens_per_s"] = TokensPerSecond;
        record["elapsed_s"] = WallSeconds;
        record["eta_s"] = double.IsNaN(EtaSeconds) ? null : EtaSeconds;
        return record;
    }

    /// <summary>The status line's fields in display order, each with its short form and priority (1 is dropped last).</summary>
    internal List<StatusField> Fields()
    {
        var inv = CultureInfo.InvariantCulture;
        double rate = TokensPerSecond;
        var fields = new List<StatusField>
        {
            new(string.Create(inv, $"{100.0 * last.Step / Math.Max(total, 1):0}%"), null, 6),
            new($"step {last.Step}/{total}", $"{last.Step}/{total}", 1),
            new(string.Create(inv, $"loss {last.Smoothed:F4}"), string.Create(inv, $"loss {last.Smoothed:F2}"), 2),
        };
        if (lastValidation is { Metrics: { } m } v)
        {
            int rare = m.RarestClass();
            string label = m.Classes[rare].Length > 12 ? m.Classes[rare][..11] + "…" : m.Classes[rare];
            fields.Add(new(string.Create(inv, $"val acc {100 * m.Accuracy:F1}%"), string.Create(inv, $"val {100 * m.Accuracy:F0}%"), 4));
            fields.Add(new(string.Create(inv, $"F1({label}) {m.F1(rare):F3}"), string.Create(inv, $"F1 {m.F1(rare):F2}"), 5));
            if (v.TrainAccuracy is { } ta)
                fields.Add(new(string.Create(inv, $"train acc {100 * ta:F1}%"), string.Create(inv, $"train {100 * ta:F0}%"), 7));
            fields.Add(new(string.Create(inv, $"val loss {v.Loss:F4}"), null, 9));
        }
        else if (lastValidation is { } lv)
        {
            fields.Add(new(string.Create(inv, $"val {lv.Loss:F4}"), string.Create(inv, $"val {lv.Loss:F2}"), 4));
            fields.Add(new(string.Create(inv, $"ppl {Math.Exp(lv.Loss):F2}"), null, 8));
        }
        if (Scheduled)
            fields.Add(new(string.Create(inv, $"lr {LearningRate:G3}"), null, 10));
        if (double.IsFinite(rate))
            fields.Add(new(string.Create(inv, $"{rate:N0} tok/s"), $"{StatusLine.Compact(rate)} tok/s", 7));
        fields.Add(new($"eta {StatusLine.Duration(EtaSeconds)}", null, 3));
        return fields;
    }

    /// <summary>Redraws the live line (at most every <see cref="RefreshSeconds"/> unless <paramref name="force"/>).</summary>
    private void Draw(bool force)
    {
        if (live is null || console is null || last.Step == 0)
            return;
        double now = WallSeconds;
        if (!force && now - lastDraw < RefreshSeconds)
            return;
        lastDraw = now;
        int width = console.Profile.Width;
        var (bar, text) = StatusLine.Fit(Fields(), width);
        if (barFit.Width == width)
            bar = Math.Min(bar, barFit.Bar);
        barFit = (width, bar);
        int done = (int)Math.Round(bar * (double)last.Step / Math.Max(total, 1));
        string markup = bar > 0 ? $"[green]{new string('━', done)}[/][grey]{new string('━', bar - done)}[/] {Markup.Escape(text)}" : Markup.Escape(text);
        // Two rows, a blank one above the status: Spectre.Console 0.55 repositions a one-row display with CSI 0 A, which
        // terminals read as "up one row" (0 means 1), so a one-row display would overwrite the line above it at every refresh.
        live.UpdateTarget(new Rows(new Text(" "), new Markup(markup) { Overflow = Overflow.Crop }));
    }

    public void Finish() => log?.Dispose();

    /// <summary>The end-of-run summary, then <paramref name="sample"/> (a generated sample or a classifier's validation report) under <paramref name="heading"/>.</summary>
    public void Summary(IReadOnlyDictionary<string, object?> summary, string sample, string heading)
    {
        if (json)
        {
            var all = new Dictionary<string, object?>(summary) { ["event"] = "summary", ["sample"] = sample };
            stdout.WriteLine(JsonSerializer.Serialize(all));
            return;
        }
        stdout.WriteLine();
        stdout.WriteLine("summary:");
        foreach (var (key, value) in summary)
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {key,-20} {(value is double d ? d.ToString("G6", CultureInfo.InvariantCulture) : value ?? "-")}"));
        if (sample.Length > 0)
        {
            stdout.WriteLine();
            stdout.WriteLine(heading);
            stdout.WriteLine(sample);
        }
    }
}
