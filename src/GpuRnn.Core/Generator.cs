namespace GpuRnn;

/// <summary>How to pick each next token when generating.</summary>
/// <param name="Temperature">Logits are divided by it before the softmax; ≤ 0 means greedy (always the most likely token).</param>
/// <param name="TopK">Sample only among the K most likely tokens; 0 = all.</param>
/// <param name="TopP">Nucleus sampling: only the most likely tokens whose probabilities add up to P; 1 = all.</param>
/// <param name="Seed">Seed of the host PRNG: the same seed gives the same text.</param>
public sealed record SamplingOptions(float Temperature = 1f, int TopK = 0, float TopP = 1f, int Seed = 0)
{
    /// <summary>Checks the values; a bad one is named as its property (<see cref="GpuRnnException.Parameter"/>).</summary>
    /// <exception cref="GpuRnnException">A value is out of range.</exception>
    public void Validate()
    {
        if (float.IsNaN(Temperature) || float.IsInfinity(Temperature))
            throw new GpuRnnException(nameof(Temperature), $"must be a finite number (got {Temperature}); 0 or less means greedy");
        if (TopK < 0)
            throw new GpuRnnException(nameof(TopK), $"must be 0 (off) or positive (got {TopK})");
        if (!(TopP > 0f && TopP <= 1f))
            throw new GpuRnnException(nameof(TopP), $"must be in (0, 1] (got {TopP})");
    }
}

/// <summary>
/// One-to-many use of a trained model: feeds each sampled token back as the next input. Runs the
/// model's stack through a <see cref="Predictor"/> one time step at a time for one sequence, and
/// samples on the host from the downloaded logits.
/// </summary>
public sealed class Generator : IDisposable
{
    private readonly RnnModel model;
    private readonly Predictor predictor;
    private readonly TokenWindow step = new(1, 1) { Steps = 1 }; // one token of one sequence
    private readonly float[] hostLogits;                          // [V]

    /// <summary>A generator for <paramref name="model"/>.</summary>
    public Generator(RnnModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        this.model = model;
        predictor = new Predictor(model);
        hostLogits = new float[model.Config.Vocab];
        step.Targets[0] = -1;
    }

    /// <summary>
    /// Continues <paramref name="prime"/> by up to <paramref name="length"/> sampled tokens, stopping
    /// early at <c>&lt;eos&gt;</c> (for character models; in a word stream <c>&lt;eos&gt;</c> is a line
    /// break). With an empty prime the model starts from a line break. Returns the generated text only.
    /// </summary>
    public string Sample(Vocabulary vocab, string prime, int length, SamplingOptions options) =>
        Sample(vocab, TokenizerKind.Char, prime, length, options);

    /// <summary>
    /// As <see cref="Sample(Vocabulary, string, int, SamplingOptions)"/>, for a model of any tokenizer
    /// and data mode. A <see cref="DataMode.Lines"/> model reads <c>&lt;bos&gt;</c> first (then the
    /// prime) and the text ends where it samples <c>&lt;eos&gt;</c>: one sequence, e.g. one name.
    /// </summary>
    public string Sample(Vocabulary vocab, TokenizerKind tokenizer, string prime, int length, SamplingOptions options, DataMode mode = DataMode.Stream)
    {
        ArgumentNullException.ThrowIfNull(vocab);
        ArgumentNullException.ThrowIfNull(prime);
        if (vocab.Count != model.Config.Vocab)
            throw new GpuRnnException($"the vocabulary has {vocab.Count} tokens but the model has V = {model.Config.Vocab}");
        if (model.Config.IsClassifier)
            throw new GpuRnnException("this model is a classifier: it predicts labels (gpurnn predict), it does not generate text");
        if (model.Config.EncoderDecoder)
            throw new GpuRnnException("this model is an encoder–decoder: it turns sources into targets (gpurnn predict), it does not generate free text");
        int[] primeIds = prime.Length > 0 ? vocab.Encode(prime, tokenizer) : [];
        if (tokenizer == TokenizerKind.Word && primeIds.Length > 0 && primeIds[^1] == vocab.EndId && !prime.EndsWith('\n'))
            primeIds = primeIds[..^1]; // the tokenizer ends every line with <eos>; an unfinished prime line has not ended
        bool lines = mode == DataMode.Lines;
        if (lines)
        {
            int bos = vocab.IdOf(Vocabulary.Bos);
            if (bos < 0)
                throw new GpuRnnException($"a line model needs {Vocabulary.Bos} in its vocabulary");
            primeIds = [bos, .. primeIds];
        }
        if (primeIds.Length == 0)
            primeIds = [StartId(vocab)];
        int end = lines || tokenizer == TokenizerKind.Char ? vocab.EndId : -1; // in a word stream <eos> is a line break, not the end
        var ids = SampleIds(primeIds, length, options, end, Excluded(vocab));
        string text = vocab.Decode(ids, tokenizer);
        return tokenizer == TokenizerKind.Word && prime.Length > 0 && !prime.EndsWith('\n') && text.Length > 0 ? " " + text : text;
    }

    /// <summary>
    /// Token-level sampling: runs <paramref name="prime"/> through the model from a zero state, then
    /// samples up to <paramref name="length"/> tokens (never one of <paramref name="excluded"/>),
    /// stopping before <paramref name="endId"/>.
    /// </summary>
    public List<int> SampleIds(ReadOnlySpan<int> prime, int length, SamplingOptions options, int endId = -1, IReadOnlyCollection<int>? excluded = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (prime.IsEmpty)
            throw new ArgumentException("sampling needs at least one prime token", nameof(prime));
        if (length < 0)
            throw new GpuRnnException(nameof(length), $"must be 0 or more (got {length})");
        var rng = new Random(options.Seed);
        step.ResetState = true; // from a zero state
        foreach (int t in prime)
            Advance(t);
        var output = new List<int>(length);
        var probs = new double[model.Config.Vocab];
        for (int n = 0; n < length; n++)
        {
            predictor.ReadLogits(hostLogits);
            int next = Pick(hostLogits, probs, options, excluded, rng);
            if (next == endId)
                break;
            output.Add(next);
            Advance(next);
        }
        return output;
    }

    /// <summary>The first input without a prime: a newline for character models, <c>&lt;eos&gt;</c> (a line just ended) for word models, else <c>&lt;bos&gt;</c>.</summary>
    private static int StartId(Vocabulary vocab)
    {
        foreach (string t in new[] { "\n", Vocabulary.Eos, Vocabulary.Bos })
        {
            int id = vocab.IdOf(t);
            if (id >= 0)
                return id;
        }
        return 0;
    }

    /// <summary>Tokens never sampled: padding and begin-of-sequence are inputs, never predictions.</summary>
    private static int[] Excluded(Vocabulary vocab) =>
        new[] { vocab.IdOf(Vocabulary.Pad), vocab.IdOf(Vocabulary.Bos) }.Where(i => i >= 0).ToArray();

    /// <summary>One time step for input <paramref name="token"/>: every layer's state advances and the logits are refreshed.</summary>
    private void Advance(int token)
    {
        if (token < 0 || token >= model.Config.Vocab)
            throw new ArgumentOutOfRangeException(nameof(token), token, $"token id outside the vocabulary of {model.Config.Vocab}");
        step.Inputs[0] = token;
        predictor.Run(step);
        step.ResetState = false;
    }

    /// <summary>Temperature, then top-k, then top-p, then one draw; greedy when the temperature is ≤ 0.</summary>
    internal static int Pick(ReadOnlySpan<float> logits, double[] probs, SamplingOptions o, IReadOnlyCollection<int>? excluded, Random rng)
    {
        int v = logits.Length;
        bool Allowed(int i) => excluded is null || !excluded.Contains(i);
        if (o.Temperature <= 0f)
        {
            int best = -1;
            for (int i = 0; i < v; i++)
            {
                if (Allowed(i) && (best < 0 || logits[i] > logits[best]))
                    best = i;
            }
            return best;
        }
        // Softmax of logits / T, max subtracted for stability; excluded tokens get probability 0.
        double max = double.NegativeInfinity;
        for (int i = 0; i < v; i++)
        {
            if (Allowed(i))
                max = Math.Max(max, logits[i] / (double)o.Temperature);
        }
        for (int i = 0; i < v; i++)
            probs[i] = Allowed(i) ? Math.Exp(logits[i] / (double)o.Temperature - max) : 0;
        if ((o.TopK > 0 && o.TopK < v) || o.TopP < 1f)
        {
            int[] order = Enumerable.Range(0, v).OrderByDescending(i => probs[i]).ThenBy(i => i).ToArray();
            double total = probs.Sum();
            double cumulative = 0;
            for (int rank = 0; rank < v; rank++)
            {
                int i = order[rank];
                bool keep = (o.TopK == 0 || rank < o.TopK) && cumulative < o.TopP * total;
                cumulative += probs[i];
                if (!keep)
                    probs[i] = 0;
            }
        }
        double sum = probs.Sum();
        double r = rng.NextDouble() * sum;
        int last = -1;
        for (int i = 0; i < v; i++)
        {
            if (probs[i] <= 0)
                continue;
            last = i;
            r -= probs[i];
            if (r < 0)
                return i;
        }
        return last; // rounding left r ≥ 0 after the last candidate
    }

    /// <summary>Releases the workspace.</summary>
    public void Dispose() => predictor.Dispose();
}
