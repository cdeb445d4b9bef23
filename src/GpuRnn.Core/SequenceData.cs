namespace GpuRnn;

/// <summary>Lines or labelled lines of a text file, as token ids.</summary>
/// <param name="Sequences">Token ids of each line.</param>
/// <param name="Labels">Class index of each line (labelled data), else null.</param>
/// <param name="LineNumbers">The 1-based file line of each sequence, for messages.</param>
public sealed record SequenceData(List<int[]> Sequences, List<int>? Labels, List<int> LineNumbers)
{
    /// <summary>Rows from which a label column with more distinct values than half the rows is refused as text.</summary>
    public const int MinRowsForLabelCheck = 8;

    /// <summary>The non-empty lines of <paramref name="text"/> (blank lines are skipped).</summary>
    public static List<(int Line, string Text)> Lines(string text) =>
        text.Split('\n').Select((l, i) => (i + 1, l)).Where(l => l.l.Trim().Length > 0).ToList();

    /// <summary>
    /// Splits <c>label&lt;TAB&gt;text</c> lines; a line without a TAB is an error naming its line.
    /// Returns the sorted label set with each line's label text and body.
    /// </summary>
    /// <exception cref="GpuRnnException">
    /// A line has no TAB or an empty label, there are fewer than two classes, or (from <see cref="MinRowsForLabelCheck"/>
    /// rows on) more distinct labels than half the rows: the label column then holds text (the columns are swapped).
    /// </exception>
    public static (string[] Classes, List<(int Line, string Label, string Text)> Rows) SplitLabeled(string text, string name)
    {
        var rows = new List<(int, string, string)>();
        foreach (var (line, body) in Lines(text))
        {
            int tab = body.IndexOf('\t');
            if (tab < 0)
                throw new GpuRnnException($"{name}:{line}: no TAB; labelled data is label<TAB>text per line");
            string label = body[..tab].Trim();
            if (label.Length == 0)
                throw new GpuRnnException($"{name}:{line}: the label before the TAB is empty");
            rows.Add((line, label, body[(tab + 1)..]));
        }
        var classes = rows.Select(r => r.Item2).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();
        if (rows.Count >= MinRowsForLabelCheck && classes.Length > rows.Count / 2)
        {
            // As many labels as (most) rows: that column is text. Say which column looks like the label.
            int second = rows.Select(r => r.Item3.Trim()).Distinct(StringComparer.Ordinal).Count();
            throw new GpuRnnException(second <= rows.Count / 2
                ? $"{name}: the first column has {classes.Length} distinct values in {rows.Count} rows and the second only {second}: the columns look swapped; labelled data is label<TAB>text, with the label first"
                : $"{name}: the first column (the label) has {classes.Length} distinct values in {rows.Count} rows, which looks like text, not labels; labelled data is label<TAB>text");
        }
        if (classes.Length < 2)
            throw new GpuRnnException($"{name}: labelled data needs at least 2 classes; found {classes.Length}{(classes.Length == 1 ? $" ('{classes[0]}')" : "")}");
        return (classes, rows);
    }

    /// <summary><c>source&lt;TAB&gt;target</c> lines; a line without a TAB is an error naming its line.</summary>
    public static List<(int Line, string Source, string Target)> SplitPairs(string text, string name)
    {
        var rows = new List<(int, string, string)>();
        foreach (var (line, body) in SequenceData.Lines(text))
        {
            int tab = body.IndexOf('\t');
            if (tab < 0)
                throw new GpuRnnException($"{name}:{line}: no TAB; paired data is source<TAB>target per line");
            rows.Add((line, body[..tab], body[(tab + 1)..]));
        }
        if (rows.Count == 0)
            throw new GpuRnnException($"{name}: no pairs");
        return rows;
    }

    /// <summary>The token ids of one line (without the line-end <c>&lt;eos&gt;</c> that the word tokenizer adds).</summary>
    public static int[] EncodeLine(Vocabulary vocab, string line, TokenizerKind tokenizer)
    {
        var ids = vocab.Encode(line, tokenizer);
        return tokenizer == TokenizerKind.Word && ids.Length > 0 && ids[^1] == vocab.EndId ? ids[..^1] : ids;
    }

    /// <summary>The tokens of every line, for building a vocabulary.</summary>
    public static string Concatenate(IEnumerable<string> lines, TokenizerKind tokenizer) =>
        string.Join(tokenizer == TokenizerKind.Word ? "\n" : "", lines);

    /// <summary>The first <paramref name="count"/> sequences (training) or the rest (validation).</summary>
    public (SequenceData Head, SequenceData Tail) Split(int count) =>
        (new SequenceData(Sequences[..count], Labels?[..count], LineNumbers[..count]),
         new SequenceData(Sequences[count..], Labels?[count..], LineNumbers[count..]));
}
