namespace GpuRnn.Cli;

/// <summary>The loss-curve picture written next to a checkpoint, drawn with ScottPlot.</summary>
internal static class LossPlot
{
    /// <summary>Training and validation loss against step, as a PNG.</summary>
    public static void Save(string path, IReadOnlyList<(double Step, double Loss)> train, IReadOnlyList<(double Step, double Loss)> val)
    {
        var plot = new ScottPlot.Plot();
        if (train.Count > 0)
        {
            var t = plot.Add.ScatterLine(train.Select(p => p.Step).ToArray(), train.Select(p => p.Loss).ToArray());
            t.LegendText = "training (per window)";
            t.LineWidth = 1;
        }
        if (val.Count > 0)
        {
            var v = plot.Add.Scatter(val.Select(p => p.Step).ToArray(), val.Select(p => p.Loss).ToArray());
            v.LegendText = "validation";
            v.LineWidth = 2;
            v.MarkerSize = 6;
        }
        plot.Title("GpuRnn training");
        plot.XLabel("step");
        plot.YLabel("cross-entropy (nats per token)");
        plot.ShowLegend();
        try
        {
            string? folder = Path.GetDirectoryName(Path.GetFullPath(path));
            if (folder is not null)
                Directory.CreateDirectory(folder);
            plot.SavePng(path, 900, 540);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new GpuRnnException($"{path}: cannot write the loss plot: {e.Message.Split('\n')[0]}", e);
        }
    }
}
