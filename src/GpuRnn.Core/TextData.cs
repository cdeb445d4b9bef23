namespace GpuRnn;

/// <summary>
/// Training or evaluation data for a <see cref="TextModel"/>, in one of the four modes (<see cref="DataMode"/>): continuous
/// text, one sequence per line, labelled lines (a classifier) or source/target pairs (an encoder–decoder). Build it from
/// strings, or read a file in the runner's formats with <see cref="FromFile"/>.
/// </summary>
public sealed class TextData
{
    private TextData(DataMode mode, string name, string? text, IReadOnlyList<string> lines, IReadOnlyList<string>? labels, IReadOnlyList<string>? targets)
    {
        Mode = mode;
        Name = name;
        Text = text;
        Sequences = lines;
        Labels = labels;
        Targets = targets;
    }

    /// <summary>The mode the data trains: the kind of model.</summary>
    public DataMode Mode { get; }

    /// <summary>What error messages call the data (a file name, or <c>data</c>).</summary>
    public string Name { get; }

    /// <summary>Continuous text (<see cref="DataMode.Stream"/>); null in the other modes.</summary>
    public string? Text { get; }

    /// <summary>The sequences: lines, texts to classify, or sources of pairs (empty for stream data).</summary>
    public IReadOnlyList<string> Sequences { get; }

    /// <summary>A classifier's label of each line; null in the other modes.</summary>
    public IReadOnlyList<string>? Labels { get; }

    /// <summary>An encoder–decoder's target of each source; null in the other modes.</summary>
    public IReadOnlyList<string>? Targets { get; }

    /// <summary>Continuous text for a language model trained in windows with the state carried (truncated BPTT).</summary>
    public static TextData Stream(string text, string name = "data")
    {
        ArgumentNullException.ThrowIfNull(text);
        return new TextData(DataMode.Stream, name, text, [], null, null);
    }

    /// <summary>One sequence per line, each read from <c>&lt;bos&gt;</c> to <c>&lt;eos&gt;</c> (e.g. names); blank lines are skipped.</summary>
    public static TextData Lines(IEnumerable<string> lines, string name = "data")
    {
        ArgumentNullException.ThrowIfNull(lines);
        var kept = lines.Where(l => l.Trim().Length > 0).ToList();
        if (kept.Count == 0)
            throw new GpuRnnException($"{name}: no non-empty lines");
        return new TextData(DataMode.Lines, name, null, kept, null, null);
    }

    /// <summary>Texts with their labels, for a many-to-one classifier.</summary>
    public static TextData Labeled(IEnumerable<(string Text, string Label)> examples, string name = "data")
    {
        ArgumentNullException.ThrowIfNull(examples);
        var rows = examples.ToList();
        if (rows.Count == 0)
            throw new GpuRnnException($"{name}: no examples");
        int empty = rows.FindIndex(r => r.Text.Length == 0 || r.Label.Trim().Length == 0);
        if (empty >= 0)
            throw new GpuRnnException($"{name}: example {empty + 1} has an empty {(rows[empty].Text.Length == 0 ? "text" : "label")}");
        return new TextData(DataMode.Labeled, name, null, rows.Select(r => r.Text).ToList(), rows.Select(r => r.Label.Trim()).ToList(), null);
    }

    /// <summary>Sources with their targets, for an encoder–decoder.</summary>
    public static TextData Pairs(IEnumerable<(string Source, string Target)> pairs, string name = "data")
    {
        ArgumentNullException.ThrowIfNull(pairs);
        var rows = pairs.ToList();
        if (rows.Count == 0)
            throw new GpuRnnException($"{name}: no pairs");
        int empty = rows.FindIndex(r => r.Source.Length == 0);
        if (empty >= 0)
            throw new GpuRnnException($"{name}: pair {empty + 1} has an empty source");
        return new TextData(DataMode.Pairs, name, null, rows.Select(r => r.Source).ToList(), null, rows.Select(r => r.Target).ToList());
    }

    /// <summary>
    /// Reads a UTF-8 file in the runner's format of <paramref name="mode"/>: any text (stream), one sequence per line
    /// (lines), <c>label&lt;TAB&gt;text</c> (labeled) or <c>source&lt;TAB&gt;target</c> (pairs).
    /// </summary>
    /// <exception cref="GpuRnnException">The file cannot be read, or a line breaks the format (the message names the file and line).</exception>
    public static TextData FromFile(string path, DataMode mode)
    {
        string text = TextFile.Read(path);
        return mode switch
        {
            DataMode.Stream => Stream(text, path),
            DataMode.Lines => Lines(SequenceData.Lines(text).Select(l => l.Text), path),
            DataMode.Labeled => Labeled(SequenceData.SplitLabeled(text, path).Rows.Select(r => (r.Text, r.Label)), path),
            DataMode.Pairs => Pairs(SequenceData.SplitPairs(text, path).Select(r => (r.Source, r.Target)), path),
            _ => throw new ArgumentOutOfRangeException(nameof(mode), mode, "unknown mode"),
        };
    }

    /// <summary>
    /// The data without its last <paramref name="heldOut"/> fraction (of the characters of stream data, of the
    /// sequences otherwise), and that tail: training and validation data, split as <c>gpurnn train --val-fraction</c> does.
    /// </summary>
    /// <exception cref="GpuRnnException">The fraction is not in [0, 1).</exception>
    public (TextData Train, TextData HeldOut) Split(double heldOut)
    {
        if (!(heldOut >= 0 && heldOut < 1))
            throw new GpuRnnException(nameof(heldOut), $"must be in [0, 1) (got {heldOut})");
        if (Mode == DataMode.Stream)
        {
            int tail = (int)(Text!.Length * heldOut);
            return (new TextData(Mode, Name, Text[..^tail], [], null, null), new TextData(Mode, Name + " (held out)", Text[^tail..], [], null, null));
        }
        int keep = Sequences.Count - (int)(Sequences.Count * heldOut); // at least 1, as heldOut < 1
        return (new TextData(Mode, Name, null, Sequences.Take(keep).ToList(), Labels?.Take(keep).ToList(), Targets?.Take(keep).ToList()),
            new TextData(Mode, Name + " (held out)", null, Sequences.Skip(keep).ToList(), Labels?.Skip(keep).ToList(), Targets?.Skip(keep).ToList()));
    }

    /// <summary>Every string a vocabulary is built from, joined for the tokenizer.</summary>
    internal string VocabularyText(TokenizerKind tokenizer) => Mode == DataMode.Stream
        ? Text!
        : SequenceData.Concatenate(Targets is null ? Sequences : Sequences.Concat(Targets), tokenizer);
}
