using GpuRnn.Checkpoints;
using ScottPlot;

namespace GpuRnn.Cli;

/// <summary>
/// The loss-curve picture written next to a checkpoint, drawn with ScottPlot from the run's whole history (a resumed
/// run's included): the training loss (per step, or per bucket of steps on a long run), a smoothed training curve,
/// the validation loss with a marker on every pass (so one pass shows too), and for a classifier the training and
/// validation accuracy on a second, right-hand axis. The legend sits below the data area, where it hides no point.
/// </summary>
internal static class LossPlot
{
    /// <summary>Draws and saves the PNG.</summary>
    public static void Save(string path, TrainingHistory history, bool classifier)
    {
        using var plot = Build(history, classifier);
        try
        {
            string? folder = Path.GetDirectoryName(Path.GetFullPath(path));
            if (folder is not null)
                Directory.CreateDirectory(folder);
            plot.SavePng(path, 900, 560);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new GpuRnnException($"{path}: cannot write the loss plot: {e.Message.Split('\n')[0]}", e);
        }
    }

    /// <summary>The plot, not yet drawn (tests look at its series).</summary>
    internal static Plot Build(TrainingHistory history, bool classifier)
    {
        var plot = new Plot();
        var train = history.Train;
        if (train.Count > 0)
        {
            double[] xs = train.Select(p => p.Center).ToArray();
            var raw = plot.Add.ScatterLine(xs, train.Select(p => p.Loss).ToArray());
            raw.LegendText = history.Stride == 1 ? "training (per step)" : $"training (mean of {history.Stride} steps)";
            raw.LineWidth = 1;
            raw.Color = Colors.SteelBlue.WithAlpha(0.35);
            if (train.Count >= 3)
            {
                int window = SmoothingWindow(train.Count);
                var smooth = plot.Add.ScatterLine(xs, Smooth(train.Select(p => p.Loss).ToArray(), window));
                smooth.LegendText = $"training, smoothed ({window * history.Stride} steps)";
                smooth.LineWidth = 2;
                smooth.Color = Colors.Navy;
            }
        }
        var evaluations = history.Evaluations;
        if (evaluations.Count > 0)
        {
            double[] steps = evaluations.Select(p => (double)p.Step).ToArray();
            var val = plot.Add.Scatter(steps, evaluations.Select(p => p.Loss).ToArray());
            val.LegendText = "validation";
            val.LineWidth = 2;
            val.MarkerSize = 7;
            val.MarkerShape = MarkerShape.FilledCircle;
            val.Color = Colors.OrangeRed;
            if (classifier)
            {
                AddAccuracy(plot, steps, evaluations.Select(p => p.Accuracy).ToArray(), "validation accuracy", Colors.OrangeRed, LinePattern.Dashed);
                AddAccuracy(plot, steps, evaluations.Select(p => p.TrainAccuracy).ToArray(), "training accuracy (sample)", Colors.Navy, LinePattern.Dotted);
                plot.Axes.Right.Label.Text = "accuracy";
                plot.Axes.Rules.Add(new ScottPlot.AxisRules.LockedVertical(plot.Axes.Right, 0, 1.02)); // accuracy is a fraction: a fixed 0–1 scale, not one zoomed on the noise
            }
        }
        plot.Title("GpuRnn training");
        plot.XLabel("step");
        plot.YLabel(classifier ? "cross-entropy (nats per sequence)" : "cross-entropy (nats per token)");
        plot.Axes.Margins(horizontal: 0.03, vertical: 0.08);
        plot.ShowLegend(Edge.Bottom);
        return plot;
    }

    private static void AddAccuracy(Plot plot, double[] steps, double?[] accuracy, string label, Color color, LinePattern pattern)
    {
        var at = Enumerable.Range(0, steps.Length).Where(i => accuracy[i] is not null).ToArray();
        if (at.Length == 0)
            return;
        var s = plot.Add.Scatter(at.Select(i => steps[i]).ToArray(), at.Select(i => accuracy[i]!.Value).ToArray());
        s.Axes.YAxis = plot.Axes.Right;
        s.LegendText = label;
        s.LineWidth = 1.5f;
        s.LinePattern = pattern;
        s.MarkerSize = 6;
        s.MarkerShape = MarkerShape.OpenSquare;
        s.Color = color;
    }

    /// <summary>The smoothing window in points: about a twentieth of the curve, odd, at least 3.</summary>
    internal static int SmoothingWindow(int points) => Math.Max(3, points / 20 | 1);

    /// <summary>A centred moving mean over <paramref name="window"/> points (narrower at the ends), so the smoothed curve does not lag the raw one.</summary>
    internal static double[] Smooth(double[] values, int window)
    {
        int half = window / 2;
        var prefix = new double[values.Length + 1];
        for (int i = 0; i < values.Length; i++)
            prefix[i + 1] = prefix[i] + values[i];
        var smooth = new double[values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            int lo = Math.Max(0, i - half), hi = Math.Min(values.Length, i + half + 1);
            smooth[i] = (prefix[hi] - prefix[lo]) / (hi - lo);
        }
        return smooth;
    }
}
