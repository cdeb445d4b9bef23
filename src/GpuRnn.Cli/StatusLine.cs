using System.Globalization;
using Spectre.Console;

namespace GpuRnn.Cli;

/// <summary>One field of the live status line: its full text, an optional shorter form, and how much it matters (1 = kept longest).</summary>
internal sealed record StatusField(string Text, string? Short, int Priority);

/// <summary>
/// Fits the live status line to a terminal width. A line wider than the terminal wraps, and a live display that
/// redraws a wrapped line in place leaves its first part behind in the scrollback at every refresh; so the line is
/// made to fit: fields take their short forms (least important first), then the least important fields go, and the
/// progress bar only takes the room that is left.
/// </summary>
internal static class StatusLine
{
    /// <summary>The bar is drawn only when at least this many cells are left for it, and never wider than <see cref="MaxBar"/>.</summary>
    internal const int MinBar = 10, MaxBar = 30;

    /// <summary>
    /// The text to show in <paramref name="width"/> columns and the width of the bar before it (0: no bar). The last
    /// column stays empty: some terminals wrap on writing it.
    /// </summary>
    public static (int Bar, string Text) Fit(IReadOnlyList<StatusField> fields, int width)
    {
        int room = Math.Max(1, width - 1);
        var text = fields.Select(f => f.Text).ToArray();
        var shown = fields.Select(_ => true).ToArray();
        while (true)
        {
            string line = string.Join(" ", Enumerable.Range(0, fields.Count).Where(i => shown[i]).Select(i => text[i]));
            int cells = line.GetCellWidth();
            if (cells <= room)
            {
                int bar = Math.Min(MaxBar, room - cells - 1);
                return (bar >= MinBar ? bar : 0, line);
            }
            // Shorten the least important field that has a short form; else drop the least important field; the last one left is cropped.
            int shorten = Enumerable.Range(0, fields.Count).Where(i => shown[i] && fields[i].Short is not null && text[i] != fields[i].Short)
                .OrderByDescending(i => fields[i].Priority).DefaultIfEmpty(-1).First();
            if (shorten >= 0)
            {
                text[shorten] = fields[shorten].Short!;
                continue;
            }
            var left = Enumerable.Range(0, fields.Count).Where(i => shown[i]).ToList();
            if (left.Count <= 1)
                return (0, Crop(line, room));
            shown[left.OrderByDescending(i => fields[i].Priority).First()] = false;
        }
    }

    private static string Crop(string line, int room)
    {
        while (line.Length > 0 && line.GetCellWidth() > room)
            line = line[..^1];
        return line;
    }

    /// <summary>A duration as h:mm:ss, or m:ss under an hour.</summary>
    public static string Duration(double seconds)
    {
        if (!double.IsFinite(seconds) || seconds < 0)
            return "-";
        long s = (long)Math.Round(seconds);
        return s >= 3600
            ? string.Create(CultureInfo.InvariantCulture, $"{s / 3600}:{s / 60 % 60:00}:{s % 60:00}")
            : string.Create(CultureInfo.InvariantCulture, $"{s / 60}:{s % 60:00}");
    }

    /// <summary>A rate in three significant figures with k/M: 8.53k, 1.20M.</summary>
    public static string Compact(double x) => x switch
    {
        >= 1e6 => string.Create(CultureInfo.InvariantCulture, $"{x / 1e6:0.##}M"),
        >= 1e3 => string.Create(CultureInfo.InvariantCulture, $"{x / 1e3:0.##}k"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{x:0}"),
    };
}
