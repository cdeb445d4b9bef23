namespace GpuRnn;

/// <summary>The data modes of DESIGN.md §6 and the product card.</summary>
public enum DataMode
{
    /// <summary>Continuous text, truncated BPTT with the state carried between windows.</summary>
    Stream,
    /// <summary>One sequence per line: <c>&lt;bos&gt;</c> then the tokens as inputs, the tokens then <c>&lt;eos&gt;</c> as targets.</summary>
    Lines,
    /// <summary><c>label&lt;TAB&gt;text</c> per line: many-to-one classification from the last true state.</summary>
    Labeled,
    /// <summary><c>source&lt;TAB&gt;target</c> per line: an encoder reads the source, a decoder started from its final states produces the target.</summary>
    Pairs,
}

/// <summary>
/// Batches of whole sequences (lines or labelled texts) for the <see cref="DataMode.Lines"/> and
/// <see cref="DataMode.Labeled"/> modes, padded to the longest sequence of the batch (DESIGN.md §6):
/// positions past a sequence's end have a negative input (no input), a negative target (no loss,
/// no gradient), and a classifier reads the state at the true last step. Every batch starts from a
/// zero state. Each epoch is shuffled with the seed, then grouped by similar length (sorted within
/// pools of 32 batches) so that padding stays small, and the batches themselves are shuffled.
/// </summary>
public sealed class SequenceBatcher : ITrainingData
{
    private const int PoolBatches = 32;
    private readonly IReadOnlyList<int[]> sequences;
    private readonly IReadOnlyList<int>? labels;
    private readonly int bos, eos, seed;
    private readonly TokenWindow window;
    private readonly IReadOnlyList<int[]>? sources;  // pairs: the encoder's inputs
    private readonly TokenWindow? sourceWindow;
    private int[][] order = [];

    /// <summary>
    /// Batches <paramref name="sequences"/> B at a time. For a language model (<paramref name="labels"/>
    /// null) sequence s becomes inputs [bos, s…] and targets [s…, eos]; for a classifier, inputs s and
    /// the label.
    /// </summary>
    /// <exception cref="GpuRnnException">No sequences, an empty sequence for a classifier, or labels that do not match.</exception>
    public SequenceBatcher(IReadOnlyList<int[]> sequences, IReadOnlyList<int>? labels, int batch, int bos, int eos, int seed)
        : this(sequences, labels, null, batch, bos, eos, seed)
    {
    }

    private SequenceBatcher(IReadOnlyList<int[]> sequences, IReadOnlyList<int>? labels, IReadOnlyList<int[]>? sources, int batch, int bos, int eos, int seed)
    {
        ArgumentNullException.ThrowIfNull(sequences);
        if (sequences.Count == 0)
            throw new GpuRnnException("the data has no sequences");
        if (labels is not null && labels.Count != sequences.Count)
            throw new ArgumentException($"{labels.Count} labels for {sequences.Count} sequences.", nameof(labels));
        if (labels is null && (bos < 0 || eos < 0))
            throw new GpuRnnException($"line mode needs {Vocabulary.Bos} and {Vocabulary.Eos} in the vocabulary");
        for (int i = 0; i < sequences.Count; i++)
        {
            if (labels is not null && sequences[i].Length == 0)
                throw new GpuRnnException($"sequence {i + 1} is empty; a classifier needs at least one token");
        }
        this.sequences = sequences;
        this.labels = labels;
        this.bos = bos;
        this.eos = eos;
        this.seed = seed;
        int longest = sequences.Max(s => s.Length) + (labels is null ? 1 : 0);
        window = new TokenWindow(batch, longest);
        if (sources is not null)
        {
            this.sources = sources;
            sourceWindow = new TokenWindow(batch, sources.Max(x => x.Length));
            window.Source = sourceWindow;
        }
        BatchesPerEpoch = (sequences.Count + batch - 1) / batch;
        Shuffle();
    }

    /// <summary>
    /// Pairs for an encoder–decoder: target t becomes the decoder window (inputs [bos, t…], targets
    /// [t…, eos]) and source s its <see cref="TokenWindow.Source"/> (inputs s, with the lengths).
    /// </summary>
    /// <exception cref="GpuRnnException">No pairs, or an empty source.</exception>
    public static SequenceBatcher Pairs(IReadOnlyList<int[]> sources, IReadOnlyList<int[]> targets, int batch, int bos, int eos, int seed)
    {
        ArgumentNullException.ThrowIfNull(sources);
        ArgumentNullException.ThrowIfNull(targets);
        if (sources.Count != targets.Count)
            throw new ArgumentException($"{sources.Count} sources for {targets.Count} targets.", nameof(sources));
        for (int i = 0; i < sources.Count; i++)
        {
            if (sources[i].Length == 0)
                throw new GpuRnnException($"pair {i + 1} has an empty source");
        }
        return new SequenceBatcher(targets, null, sources, batch, bos, eos, seed);
    }

    /// <summary>The longest source of a pairs batcher (0 otherwise).</summary>
    public int SourceCapacity => sourceWindow?.Capacity ?? 0;

    /// <summary>Batches per epoch (the last one may hold fewer sequences; its empty slots add nothing).</summary>
    public int BatchesPerEpoch { get; }

    /// <inheritdoc/>
    public int StepsPerEpoch => BatchesPerEpoch;

    /// <summary>The longest window: the longest sequence (+1 for the <c>&lt;bos&gt;</c> of a line).</summary>
    public int Capacity => window.Capacity;

    /// <summary>Completed epochs.</summary>
    public int Epoch { get; private set; }

    /// <summary>Index of the next batch within the epoch.</summary>
    public int Position { get; private set; }

    /// <summary>Moves to a saved position (for resuming).</summary>
    public void Seek(int epoch, int position)
    {
        if (epoch < 0 || position < 0 || position >= BatchesPerEpoch)
            throw new GpuRnnException($"data position {position} of epoch {epoch} is not a batch of this data");
        Epoch = epoch;
        Position = position;
        Shuffle();
    }

    /// <summary>Fills and returns the next training batch (the same object every call).</summary>
    public TokenWindow Next()
    {
        Fill(order[Position]);
        if (++Position == BatchesPerEpoch)
        {
            Position = 0;
            Epoch++;
            Shuffle();
        }
        return window;
    }

    /// <summary>Every sequence once, in file order, B at a time (for evaluation and prediction); the same window object each time.</summary>
    public IEnumerable<TokenWindow> InOrder()
    {
        for (int start = 0; start < sequences.Count; start += window.Batch)
        {
            Fill(Enumerable.Range(start, Math.Min(window.Batch, sequences.Count - start)).ToArray());
            yield return window;
        }
    }

    private void Fill(int[] members)
    {
        if (sourceWindow is not null)
            FillSource(members);
        int b = window.Batch;
        int steps = 1;
        foreach (int m in members)
            steps = Math.Max(steps, Length(m));
        window.Steps = steps;
        window.ResetState = true;
        window.Padded = true;
        Array.Fill(window.Inputs, -1, 0, steps * b);
        Array.Fill(window.Targets, -1, 0, steps * b);
        for (int slot = 0; slot < b; slot++)
        {
            window.Lengths[slot] = 1;
            window.Labels[slot] = -1; // an empty slot of a short last batch: no label, no loss
            if (slot >= members.Length)
                continue;
            int m = members[slot];
            var seq = sequences[m];
            window.Lengths[slot] = Length(m);
            if (labels is not null)
            {
                window.Labels[slot] = labels[m];
                for (int t = 0; t < seq.Length; t++)
                    window.Inputs[t * b + slot] = seq[t];
                continue;
            }
            window.Inputs[slot] = bos;
            for (int t = 0; t < seq.Length; t++)
            {
                window.Inputs[(t + 1) * b + slot] = seq[t];
                window.Targets[t * b + slot] = seq[t];
            }
            window.Targets[seq.Length * b + slot] = eos;
        }
    }

    /// <summary>The encoder's window of a pairs batch: inputs only, padded, with the true lengths.</summary>
    private void FillSource(int[] members)
    {
        var w = sourceWindow!;
        int b = w.Batch;
        int steps = members.Max(m => sources![m].Length);
        w.Steps = steps;
        w.ResetState = true;
        w.Padded = true;
        Array.Fill(w.Inputs, -1, 0, steps * b);
        Array.Fill(w.Targets, -1, 0, steps * b);
        Array.Fill(w.Lengths, 1);
        Array.Fill(w.Labels, -1);
        for (int slot = 0; slot < members.Length; slot++)
        {
            var seq = sources![members[slot]];
            w.Lengths[slot] = seq.Length;
            for (int t = 0; t < seq.Length; t++)
                w.Inputs[t * b + slot] = seq[t];
        }
    }

    private int Length(int m) => sequences[m].Length + (labels is null ? 1 : 0);

    /// <summary>The batches of the current epoch: shuffled, grouped by length within pools, batch order shuffled.</summary>
    private void Shuffle()
    {
        var rng = new Random(unchecked(seed * 1_000_003 + Epoch)); // not HashCode.Combine: that is randomised per process
        int[] all = Enumerable.Range(0, sequences.Count).ToArray();
        rng.Shuffle(all);
        int b = window.Batch, pool = b * PoolBatches;
        var batches = new List<int[]>(BatchesPerEpoch);
        for (int start = 0; start < all.Length; start += pool)
        {
            var sorted = all.Skip(start).Take(pool).OrderBy(Length).ToArray(); // OrderBy is stable: ties keep the shuffle
            for (int i = 0; i < sorted.Length; i += b)
                batches.Add(sorted.Skip(i).Take(b).ToArray());
        }
        order = batches.ToArray();
        rng.Shuffle(order);
    }
}
