namespace GpuRnn.Cli;

/// <summary>The attention weights of one decoded input as a heat map, drawn with ScottPlot (as the loss curve).</summary>
internal static class AttentionPlot
{
    /// <summary>
    /// One row per output token (top to bottom in decoding order), one column per source token; cell (t, j) is the
    /// weight output step t gave source position j. <paramref name="weights"/> holds a row per output step over the
    /// source window's steps; only the first <c>source.Length</c> columns (the true positions) are drawn.
    /// </summary>
    public static void Save(string path, IReadOnlyList<string> source, IReadOnlyList<string> output, IReadOnlyList<float[]> weights)
    {
        var data = new double[output.Count, source.Count];
        for (int t = 0; t < output.Count; t++)
            for (int j = 0; j < source.Count; j++)
                data[t, j] = weights[t][j];
        var plot = new ScottPlot.Plot();
        var map = plot.Add.Heatmap(data);
        map.Colormap = new ScottPlot.Colormaps.Viridis();
        map.CellAlignment = ScottPlot.Alignment.MiddleCenter; // cell (t, j) centred on x = j, y = rows − 1 − t
        plot.Add.ColorBar(map);
        plot.Axes.Bottom.SetTicks(Enumerable.Range(0, source.Count).Select(j => (double)j).ToArray(), source.Select(Show).ToArray());
        plot.Axes.Left.SetTicks(Enumerable.Range(0, output.Count).Select(t => (double)(output.Count - 1 - t)).ToArray(), output.Select(Show).ToArray());
        plot.Axes.Margins(0, 0);
        plot.Title("attention weights of the first input");
        plot.XLabel("source tokens");
        plot.YLabel("output tokens");
        try
        {
            string? folder = Path.GetDirectoryName(Path.GetFullPath(path));
            if (folder is not null)
                Directory.CreateDirectory(folder);
            plot.SavePng(path, Math.Max(480, 60 + 36 * source.Count), Math.Max(360, 120 + 30 * output.Count));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new GpuRnnException($"{path}: cannot write the attention plot: {e.Message.Split('\n')[0]}", e);
        }
    }

    /// <summary>A token as a tick label: a space shown as ␣ so it is visible.</summary>
    private static string Show(string token) => token == " " ? "␣" : token;
}
