using System.Globalization;
using System.Text.Json;
using Spectre.Console;

namespace GpuRnn.Cli;

/// <summary>
/// Where training progress goes: a live Spectre.Console progress bar on an interactive terminal,
/// plain lines (no control characters) when stdout is redirected, JSON lines with --json, and every
/// step as a JSON object in the --log file. Keeps the loss curves for the plot.
/// </summary>
internal sealed class Reporter
{
    private readonly TextWriter stdout;
    private readonly bool json;
    private readonly StreamWriter? log;
    private readonly long total;
    private readonly int tokensPerStep;
    private readonly long every;
    private ProgressTask? bar;
    private double lastVal = double.NaN;

    public Reporter(TextWriter stdout, bool json, string? logPath, long total, int tokensPerStep)
    {
        this.stdout = stdout;
        this.json = json;
        this.total = total;
        this.tokensPerStep = tokensPerStep;
        every = Math.Max(1, total / 50);
        Interactive = !json && ReferenceEquals(stdout, Console.Out) && !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;
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
    public bool Interactive { get; }

    /// <summary>(step, training loss) of every step.</summary>
    public List<(double Step, double Loss)> TrainCurve { get; } = [];

    /// <summary>(step, validation loss) of every evaluation.</summary>
    public List<(double Step, double Loss)> ValCurve { get; } = [];

    public void Start(string header)
    {
        if (json)
            stdout.WriteLine(JsonSerializer.Serialize(new { @event = "start", message = header }));
        else
            stdout.WriteLine(header);
    }

    /// <summary>Runs the training loop, inside a live progress display when interactive.</summary>
    public T Run<T>(long startStep, Func<T> body)
    {
        if (!Interactive)
            return body();
        return AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                bar = ctx.AddTask("starting", maxValue: total);
                bar.Value = startStep;
                return body();
            });
    }

    /// <summary>The learning rate of the update being reported (a schedule changes it).</summary>
    public float LearningRate { get; set; }

    public void Step(long step, double loss, double smoothed, double? val, double seconds, long stepsThisRun)
    {
        AddThinned(TrainCurve, (step, loss));
        if (val is { } v)
        {
            ValCurve.Add((step, v));
            lastVal = v;
        }
        double tokensPerSecond = stepsThisRun * (double)tokensPerStep / Math.Max(seconds, 1e-9);
        double eta = (total - step) * seconds / Math.Max(stepsThisRun, 1);
        var record = new Dictionary<string, object?>
        {
            ["step"] = step,
            ["loss"] = loss,
            ["smoothed_loss"] = smoothed,
            ["lr"] = LearningRate,
            ["val_loss"] = val,
            ["val_perplexity"] = val is { } pv ? Math.Exp(pv) : null,
            ["tokens_per_s"] = tokensPerSecond,
            ["elapsed_s"] = seconds,
        };
        log?.WriteLine(JsonSerializer.Serialize(record));
        string valText = double.IsNaN(lastVal) ? "" : $" val {lastVal:F4} ppl {Math.Exp(lastVal):F2}";
        string line = string.Create(CultureInfo.InvariantCulture, $"step {step}/{total} loss {loss:F4} smoothed {smoothed:F4}{valText} lr {LearningRate:G3} {tokensPerSecond:F0} tok/s eta {TimeSpan.FromSeconds(Math.Round(eta)):c}");
        if (bar is not null)
        {
            bar.Description = Markup.Escape(line);
            bar.Value = step;
        }
        else if (step % every == 0 || val is not null || step == total)
        {
            stdout.WriteLine(json ? JsonSerializer.Serialize(record) : line);
        }
    }

    public void Finish() => log?.Dispose();

    /// <summary>Most points a curve keeps: past it, every other point is dropped, so a long run's memory stays bounded while the plot keeps its shape.</summary>
    internal const int MaxCurvePoints = 20_000;

    internal static void AddThinned(List<(double Step, double Loss)> curve, (double Step, double Loss) point)
    {
        curve.Add(point);
        if (curve.Count <= MaxCurvePoints)
            return;
        int kept = 0;
        for (int i = 0; i < curve.Count; i += 2)
            curve[kept++] = curve[i];
        curve.RemoveRange(kept, curve.Count - kept);
    }

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
