using GpuRnn.Checkpoints;

namespace GpuRnn.Cli;

/// <summary>
/// The data of one training run in its mode: the vocabulary (and class names), the training windows,
/// and how to score the held-out tail. Stream data holds out the tail of the token stream; line and
/// labelled data hold out the last lines.
/// </summary>
internal sealed class TrainingSet
{
    private TrainingSet(Vocabulary vocabulary, string[]? labels, ITrainingData train, int longest, string description, Func<Predictor, Validation?> validate)
    {
        Vocabulary = vocabulary;
        Labels = labels;
        Train = train;
        Longest = longest;
        Description = description;
        Validate = validate;
    }

    public Vocabulary Vocabulary { get; }

    /// <summary>Class names of labelled data, in index order; null otherwise.</summary>
    public string[]? Labels { get; }

    public ITrainingData Train { get; }

    /// <summary>The most time steps a window holds (T for stream data, the longest line otherwise).</summary>
    public int Longest { get; }

    public string Description { get; }

    /// <summary>Scores the held-out data; null when there is none.</summary>
    public Func<Predictor, Validation?> Validate { get; }

    /// <summary>
    /// The result of a validation pass: the loss, and a classifier's or an encoder–decoder's metrics; for a classifier
    /// also its accuracy on a fixed sample of its training rows (<see cref="TrainingSample"/>), to set beside the validation accuracy.
    /// </summary>
    public sealed record Validation(double Loss, ClassifierMetrics? Metrics, PairMetrics? Pairs = null, double? TrainAccuracy = null);

    /// <summary>
    /// The training rows a classifier's training accuracy is measured on at each validation pass: as many as the
    /// validation rows, at least 256 (all when fewer), spread evenly over the file (which may be sorted by label).
    /// </summary>
    internal static int[] TrainingSample(int trainCount, int valCount)
    {
        int n = Math.Min(trainCount, Math.Max(valCount, 256));
        return Enumerable.Range(0, n).Select(i => (int)((long)i * trainCount / n)).ToArray();
    }

    /// <summary>The longest source of pairs data (the encoder's window); 0 otherwise.</summary>
    public int LongestSource { get; private init; }

    /// <summary>
    /// Reads the data of <paramref name="mode"/>. <paramref name="beforeAllocating"/> sees the vocabulary,
    /// the class names, the longest window and the longest source (pairs; else 0) before any batch
    /// buffer is allocated (the memory check).
    /// </summary>
    public static TrainingSet Build(DataMode mode, string text, string dataName, Checkpoint? start, TokenizerKind tokenizer,
        int maxVocab, int minCount, double valFraction, int batch, int seqLen, int seed, Action<Vocabulary, string[]?, int, int> beforeAllocating)
    {
        switch (mode)
        {
            case DataMode.Stream:
            {
                var vocab = start?.Vocabulary ?? Vocabulary.FromText(text, tokenizer, maxVocab, minCount);
                var ids = vocab.Encode(text, tokenizer);
                int valCount = (int)(ids.Length * valFraction);
                var trainIds = ids[..^valCount];
                var valIds = ids[^valCount..];
                int minimum = 2 * batch;
                if (trainIds.Length < minimum)
                    throw new GpuRnnException($"{dataName}: {trainIds.Length} training tokens; --batch {batch} needs at least {minimum} (2 per stream)");
                if (valCount > 0 && valIds.Length < minimum)
                    throw new GpuRnnException($"{dataName}: the validation tail has {valIds.Length} tokens; --batch {batch} needs at least {minimum}; raise --val-fraction or set it to 0");
                beforeAllocating(vocab, null, seqLen, 0);
                return new TrainingSet(vocab, null, new StreamBatcher(trainIds, batch, seqLen), seqLen,
                    $"{ids.Length:N0} tokens ({trainIds.Length:N0} train, {valIds.Length:N0} validation)",
                    t => valIds.Length == 0 ? null : new Validation(t.Evaluate(valIds, batch, seqLen).Loss, null));
            }
            case DataMode.Lines:
            {
                var lines = SequenceData.Lines(text);
                if (lines.Count == 0)
                    throw new GpuRnnException($"{dataName}: no non-empty lines");
                var vocab = start?.Vocabulary ?? Vocabulary.FromText(SequenceData.Concatenate(lines.Select(l => l.Text), tokenizer), tokenizer, maxVocab, minCount);
                var seqs = lines.Select(l => SequenceData.EncodeLine(vocab, l.Text, tokenizer)).ToList();
                var (train, val) = Split(seqs, valFraction, dataName);
                beforeAllocating(vocab, null, seqs.Max(q => q.Length) + 1, 0);
                int bos = vocab.IdOf(Vocabulary.Bos), eos = vocab.EndId;
                var batcher = new SequenceBatcher(train, null, batch, bos, eos, seed);
                var valBatcher = val.Count > 0 ? new SequenceBatcher(val, null, batch, bos, eos, seed) : null;
                return new TrainingSet(vocab, null, batcher, batcher.Capacity,
                    $"{seqs.Count:N0} lines ({train.Count:N0} train, {val.Count:N0} validation), longest {batcher.Capacity - 1} tokens",
                    t => valBatcher is null ? null : new Validation(t.Evaluate(valBatcher.InOrder()).Loss, null));
            }
            case DataMode.Labeled:
            {
                var (classes, rows) = SequenceData.SplitLabeled(text, dataName);
                if (start is not null && !start.Labels.SequenceEqual(classes))
                    throw new GpuRnnException($"{dataName}: its labels [{string.Join(", ", classes)}] differ from {start.Source}'s [{string.Join(", ", start.Labels)}]");
                var vocab = start?.Vocabulary ?? Vocabulary.FromText(SequenceData.Concatenate(rows.Select(r => r.Text), tokenizer), tokenizer, maxVocab, minCount);
                var seqs = new List<int[]>();
                var labels = new List<int>();
                foreach (var (line, label, body) in rows)
                {
                    var ids = SequenceData.EncodeLine(vocab, body, tokenizer);
                    if (ids.Length == 0)
                        throw new GpuRnnException($"{dataName}:{line}: the text after the TAB is empty");
                    seqs.Add(ids);
                    labels.Add(Array.IndexOf(classes, label));
                }
                var (train, val) = Split(seqs, valFraction, dataName);
                beforeAllocating(vocab, classes, seqs.Max(q => q.Length), 0);
                var batcher = new SequenceBatcher(train, labels[..train.Count], batch, -1, -1, seed);
                var valBatcher = val.Count > 0 ? new SequenceBatcher(val, labels[train.Count..], batch, -1, -1, seed) : null;
                var sample = TrainingSample(train.Count, val.Count);
                var trainSample = valBatcher is null ? null : new SequenceBatcher(sample.Select(i => train[i]).ToList(), sample.Select(i => labels[i]).ToList(), batch, -1, -1, seed);
                return new TrainingSet(vocab, classes, batcher, batcher.Capacity,
                    $"{seqs.Count:N0} labelled lines ({train.Count:N0} train, {val.Count:N0} validation), classes {string.Join(", ", classes)}",
                    t =>
                    {
                        if (valBatcher is null || trainSample is null)
                            return null;
                        var m = ClassifierMetrics.Compute(t, valBatcher, classes);
                        return new Validation(m.Loss, m, TrainAccuracy: ClassifierMetrics.Compute(t, trainSample, classes).Accuracy);
                    });
            }
            case DataMode.Pairs:
            {
                var rows = SequenceData.SplitPairs(text, dataName);
                var vocab = start?.Vocabulary ?? Vocabulary.FromText(SequenceData.Concatenate(rows.SelectMany(r => new[] { r.Source, r.Target }), tokenizer), tokenizer, maxVocab, minCount);
                var sources = rows.Select(r => SequenceData.EncodeLine(vocab, r.Source, tokenizer)).ToList();
                var targets = rows.Select(r => SequenceData.EncodeLine(vocab, r.Target, tokenizer)).ToList();
                int empty = sources.FindIndex(x => x.Length == 0);
                if (empty >= 0)
                    throw new GpuRnnException($"{dataName}:{rows[empty].Line}: the source before the TAB is empty");
                int valCount = (int)(rows.Count * valFraction);
                if (valCount >= rows.Count)
                    throw new GpuRnnException($"{dataName}: {rows.Count} pairs leave none for training with --val-fraction {valFraction}");
                int trainCount = rows.Count - valCount;
                beforeAllocating(vocab, null, targets.Max(q => q.Length) + 1, sources.Max(q => q.Length));
                int bos = vocab.IdOf(Vocabulary.Bos), eos = vocab.EndId;
                if (bos < 0 || eos < 0)
                    throw new GpuRnnException($"pairs mode needs {Vocabulary.Bos} and {Vocabulary.Eos} in the vocabulary");
                var batcher = SequenceBatcher.Pairs(sources[..trainCount], targets[..trainCount], batch, bos, eos, seed);
                var valTargets = targets[trainCount..];
                var valBatcher = valCount > 0 ? SequenceBatcher.Pairs(sources[trainCount..], valTargets, batch, bos, eos, seed) : null;
                int[] excluded = [vocab.IdOf(Vocabulary.Pad), bos];
                return new TrainingSet(vocab, null, batcher, batcher.Capacity,
                    $"{rows.Count:N0} pairs ({trainCount:N0} train, {valCount:N0} validation), longest source {batcher.SourceCapacity}, longest target {batcher.Capacity - 1} tokens",
                    t =>
                    {
                        if (valBatcher is null)
                            return null;
                        var m = PairMetrics.Compute(t, valBatcher, valTargets, bos, eos, excluded);
                        return new Validation(m.Loss, null, m);
                    })
                { LongestSource = batcher.SourceCapacity };
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(mode), mode, "unknown mode");
        }
    }

    /// <summary>The first lines train, the last <paramref name="valFraction"/> validate.</summary>
    private static (List<int[]> Train, List<int[]> Val) Split(List<int[]> seqs, double valFraction, string dataName)
    {
        int valCount = (int)(seqs.Count * valFraction);
        if (valCount >= seqs.Count)
            throw new GpuRnnException($"{dataName}: {seqs.Count} lines leave none for training with --val-fraction {valFraction}");
        return (seqs[..^valCount], seqs[^valCount..]);
    }
}
