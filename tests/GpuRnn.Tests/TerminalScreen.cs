using System.Text;
using Spectre.Console;

namespace GpuRnn.Tests;

/// <summary>
/// What a VT100-style terminal of a given width shows after some output: enough of the protocol for a live display
/// (CR, LF as the tty's CR LF, cursor up/down/column, erase in line and display, SGR and mode sets ignored). Rows
/// include the scrollback. A line longer than the width wraps as a terminal wraps it, and is counted in
/// <see cref="Wraps"/>: a live display that lets the terminal wrap cannot find its start again.
/// </summary>
internal sealed class TerminalScreen(int width)
{
    private readonly List<StringBuilder> rows = [new()];
    private int row, column;
    private bool pendingWrap; // the cursor sits past the last column: the next character wraps

    /// <summary>How often the terminal wrapped a line itself.</summary>
    public int Wraps { get; private set; }

    /// <summary>The rows, trailing blanks trimmed, without trailing empty rows.</summary>
    public IReadOnlyList<string> Rows
    {
        get
        {
            var all = rows.Select(r => r.ToString().TrimEnd()).ToList();
            while (all.Count > 0 && all[^1].Length == 0)
                all.RemoveAt(all.Count - 1);
            return all;
        }
    }

    public void Write(string output)
    {
        for (int i = 0; i < output.Length; i++)
        {
            char ch = output[i];
            if (ch == '\u001b')
            {
                i = Escape(output, i);
                continue;
            }
            switch (ch)
            {
                case '\r':
                    (column, pendingWrap) = (0, false);
                    break;
                case '\n':
                    (row, column, pendingWrap) = (row + 1, 0, false);
                    Row(row);
                    break;
                default:
                    Put(ch);
                    break;
            }
        }
    }

    private StringBuilder Row(int index)
    {
        while (rows.Count <= index)
            rows.Add(new StringBuilder());
        return rows[index];
    }

    private void Put(char ch)
    {
        if (pendingWrap)
        {
            (row, column, pendingWrap) = (row + 1, 0, false);
            Wraps++;
        }
        var line = Row(row);
        while (line.Length < column)
            line.Append(' ');
        if (column < line.Length)
            line[column] = ch;
        else
            line.Append(ch);
        column += Math.Max(1, ch.GetCellWidth());
        if (column >= width)
            (column, pendingWrap) = (width - 1, true);
    }

    /// <summary>Interprets the escape sequence at <paramref name="start"/>; returns the index of its last character.</summary>
    private int Escape(string s, int start)
    {
        if (start + 1 >= s.Length)
            return start;
        if (s[start + 1] != '[')
            return start + 1; // ESC = and the like: a mode, no effect on the text
        int end = start + 2;
        while (end < s.Length && (char.IsDigit(s[end]) || s[end] is ';' or '?'))
            end++;
        string parameters = s[(start + 2)..end];
        int n = int.TryParse(parameters, out int v) ? v : 0;
        switch (s[end])
        {
            case 'A': // a count of 0 means 1, as in every VT100 descendant
                row = Math.Max(0, row - Math.Max(1, n));
                pendingWrap = false;
                break;
            case 'B':
                row += Math.Max(1, n);
                Row(row);
                pendingWrap = false;
                break;
            case 'G':
                (column, pendingWrap) = (Math.Max(1, n) - 1, false);
                break;
            case 'H':
                (row, column, pendingWrap) = (0, 0, false);
                break;
            case 'K':
                var line = Row(row);
                if (n == 2)
                    line.Clear();
                else if (n == 0 && column < line.Length)
                    line.Length = column;
                else if (n == 1)
                    for (int c = 0; c <= column && c < line.Length; c++)
                        line[c] = ' ';
                break;
            case 'J':
                if (n is 2 or 3)
                    foreach (var r in rows)
                        r.Clear();
                else if (n == 0)
                {
                    var cut = Row(row);
                    if (column < cut.Length)
                        cut.Length = column;
                    rows.RemoveRange(row + 1, rows.Count - row - 1);
                }
                break;
            case 'm' or 'h' or 'l':
                break; // colours, cursor visibility
            default:
                throw new NotSupportedException($"escape sequence ESC [{parameters}{s[end]} is not emulated");
        }
        return end;
    }
}
