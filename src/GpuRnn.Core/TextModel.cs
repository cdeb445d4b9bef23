using GpuRnn.Kernels;
using GpuRnn.Checkpoints;

namespace GpuRnn;

/// <summary>
/// The sizes of a new <see cref="TextModel"/>; the vocabulary (and a classifier's classes) come from the data.
/// Every field has the runner's default, so <c>new ModelSettings { Hidden = 64 }</c> changes one thing.
/// </summary>
public sealed record ModelSettings
{
    /// <summary>The recurrent cell of every layer (PyTorch's nn.RNN, nn.GRU, nn.LSTM).</summary>
    public CellKind Cell { get; init; } = CellKind.Elman;

    /// <summary>H, hidden units per layer.</summary>
    public int Hidden { get; init; } = 128;

    /// <summary>L, stacked recurrent layers.</summary>
    public int Layers { get; init; } = 1;

    /// <summary>How text becomes tokens: characters or words.</summary>
    public TokenizerKind Tokenizer { get; init; } = TokenizerKind.Char;

    /// <summary>Keep the N most frequent tokens, the rest become <c>&lt;unk&gt;</c>; 0 = all.</summary>
    public int MaxVocab { get; init; }

    /// <summary>Keep tokens seen at least this many times, the rest become <c>&lt;unk&gt;</c>.</summary>
    public int MinCount { get; init; } = 1;

    /// <summary>Seed of the weight initialisation.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>The model's configuration for a vocabulary of <paramref name="vocab"/> tokens in <paramref name="mode"/>.</summary>
    internal ModelConfig Config(int vocab, int classes, DataMode mode)
    {
        Setting.RequirePositive(Hidden, $"{nameof(ModelSettings)}.{nameof(Hidden)}");
        Setting.RequirePositive(Layers, $"{nameof(ModelSettings)}.{nameof(Layers)}");
        return new ModelConfig(vocab, Hidden, Layers, classes, mode == DataMode.Pairs, Cell);
    }
}

/// <summary>How <see cref="TextModel.Fit"/> trains: steps, batch shape, optimizer.</summary>
public sealed record FitSettings
{
    /// <summary>Optimizer updates, one per batch.</summary>
    public int Steps { get; init; } = 200;

    /// <summary>B, sequences (or streams) per batch.</summary>
    public int Batch { get; init; } = 32;

    /// <summary>T, the truncated-BPTT window of stream data (other modes pad each batch to its longest sequence).</summary>
    public int SeqLen { get; init; } = 64;

    /// <summary>The update rule; the runner's default is Adam, learning rate 2e-3, gradients clipped to norm 5.</summary>
    public OptimizerSettings Optimizer { get; init; } = new(OptimizerKind.Adam, 2e-3f, ClipNorm: 5f);

    /// <summary>Seed of the batch order of sequence data.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>Read the loss every N steps (a 4-byte copy that waits for the device) and pass it to <see cref="Progress"/>; the last step is always read.</summary>
    public int ReportEvery { get; init; } = 10;

    /// <summary>Called with (step, mean loss of that step's batch) each time the loss is read.</summary>
    public Action<long, float>? Progress { get; init; }
}

/// <summary>A classifier's answer: the most likely label and its probability.</summary>
public sealed record Prediction(string Label, double Probability);

/// <summary>
/// Attention weights of one translation: <c>Weights[t][j]</c> is output token <c>Output[t]</c>'s weight on source token
/// <c>Source[j]</c>; each row sums to 1.
/// </summary>
public sealed record AttentionMap(IReadOnlyList<string> Source, IReadOnlyList<string> Output, IReadOnlyList<float[]> Weights);

/// <summary>
/// A model's score on data: the mean loss per counted target (token, or label for a classifier) and, by mode, the
/// classifier's accuracy and per-class metrics or the encoder–decoder's exact-match and token accuracy.
/// </summary>
public sealed record Evaluation(double Loss, long Count, ClassifierMetrics? Classes = null, PairMetrics? Pairs = null)
{
    /// <summary>exp(loss): the perplexity per token (or per label).</summary>
    public double Perplexity => Math.Exp(Loss);
}

/// <summary>
/// A recurrent model together with what it needs to be used on text — its vocabulary, tokenizer, data mode and class
/// names — on a device, in the spirit of a PyTorch or Keras model: create it for some data or load it from a
/// checkpoint, <see cref="Fit"/>, <see cref="Evaluate"/>, <see cref="Save"/>, and ask it: <see cref="Predict(string)"/>
/// (a classifier), <see cref="Translate(string, int)"/> (an encoder–decoder), <see cref="Sample(string, int, float, int)"/>
/// (a language model). For finer control the pieces are public: <see cref="Network"/> is the <see cref="RnnModel"/>
/// that <see cref="Trainer"/>, <see cref="Predictor"/> and <see cref="Generator"/> run.
/// </summary>
public sealed class TextModel : IDisposable
{
    private readonly GpuDevice? ownedDevice;
    private Trainer? trainer;
    private Predictor? predictor;
    private Generator? generator;

    private TextModel(RnnModel network, Vocabulary vocabulary, TokenizerKind tokenizer, DataMode mode, IReadOnlyList<string> labels, GpuDevice? ownedDevice)
    {
        Network = network;
        Vocabulary = vocabulary;
        Tokenizer = tokenizer;
        Mode = mode;
        Labels = labels;
        this.ownedDevice = ownedDevice;
    }

    /// <summary>The parameters on the device (for <see cref="Trainer"/>, <see cref="Predictor"/>, <see cref="Generator"/> directly).</summary>
    public RnnModel Network { get; }

    /// <summary>The sizes: vocabulary, hidden units, layers, classes, cell.</summary>
    public ModelConfig Config => Network.Config;

    /// <summary>Tokens ↔ ids.</summary>
    public Vocabulary Vocabulary { get; }

    /// <summary>How text becomes tokens.</summary>
    public TokenizerKind Tokenizer { get; }

    /// <summary>The kind of data the model reads: stream or lines (language models), labeled (a classifier), pairs (an encoder–decoder).</summary>
    public DataMode Mode { get; }

    /// <summary>A classifier's class names in index order; empty otherwise.</summary>
    public IReadOnlyList<string> Labels { get; }

    /// <summary>Optimizer updates made by <see cref="Fit"/> on this object.</summary>
    public long Steps => trainer?.StepCount ?? 0;

    /// <summary>A new model for <paramref name="data"/>'s mode, its vocabulary (and classes) built from the data, on the device <paramref name="device"/> names (<c>auto</c>, <c>cuda</c>, <c>opencl</c>, <c>cpu</c>, with an optional <c>:index</c>).</summary>
    /// <exception cref="GpuRnnException">A setting is out of range, or the device is not present.</exception>
    public static TextModel Create(TextData data, ModelSettings? settings = null, string device = "auto")
    {
        var gpu = GpuDevice.Open(device);
        try
        {
            return Create(data, settings, gpu, owned: true);
        }
        catch
        {
            gpu.Dispose();
            throw;
        }
    }

    /// <summary>As <see cref="Create(TextData, ModelSettings?, string)"/>, on a device the caller owns (and disposes after this model).</summary>
    public static TextModel Create(TextData data, ModelSettings? settings, GpuDevice device) => Create(data, settings, device, owned: false);

    private static TextModel Create(TextData data, ModelSettings? settings, GpuDevice device, bool owned)
    {
        ArgumentNullException.ThrowIfNull(data);
        settings ??= new ModelSettings();
        var vocab = Vocabulary.FromText(data.VocabularyText(settings.Tokenizer), settings.Tokenizer, settings.MaxVocab, settings.MinCount);
        string[] labels = data.Labels?.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray() ?? [];
        if (data.Mode == DataMode.Labeled && labels.Length < 2)
            throw new GpuRnnException($"{data.Name}: a classifier needs at least 2 classes; found {labels.Length}");
        var network = new RnnModel(device, settings.Config(vocab.Count, labels.Length, data.Mode), settings.Seed);
        return new TextModel(network, vocab, settings.Tokenizer, data.Mode, labels, owned ? device : null);
    }

    /// <summary>Loads a checkpoint (of <c>gpurnn train</c>, of <see cref="Save"/>, or a PyTorch state_dict with <c>gpurnn.vocab</c>) onto the device <paramref name="device"/> names.</summary>
    /// <exception cref="GpuRnnException">The file is missing or not a usable checkpoint (the message names it), or the device is not present.</exception>
    public static TextModel Load(string path, string device = "auto")
    {
        var checkpoint = Checkpoint.Load(path);
        var gpu = GpuDevice.Open(device);
        try
        {
            return FromCheckpoint(checkpoint, gpu, owned: true);
        }
        catch
        {
            gpu.Dispose();
            throw;
        }
    }

    /// <summary>As <see cref="Load(string, string)"/>, on a device the caller owns.</summary>
    public static TextModel Load(string path, GpuDevice device) => FromCheckpoint(Checkpoint.Load(path), device, owned: false);

    private static TextModel FromCheckpoint(Checkpoint c, GpuDevice device, bool owned) =>
        new(c.CreateModel(device), c.Vocabulary, c.Tokenizer, c.Mode, c.Labels, owned ? device : null);

    /// <summary>Writes the weights, vocabulary, tokenizer, mode and class names as a safetensors checkpoint (atomically) that <see cref="Load(string, string)"/> and every <c>gpurnn</c> command read.</summary>
    public void Save(string path) =>
        Checkpoint.Save(path, Network, Vocabulary, Tokenizer, mode: Mode, labels: Config.IsClassifier ? Labels : null);

    /// <summary>
    /// Trains on <paramref name="data"/> (of this model's mode) for <see cref="FitSettings.Steps"/> optimizer updates,
    /// cycling through the data; a later call continues with the same optimizer state unless its optimizer differs.
    /// Returns the losses read (every <see cref="FitSettings.ReportEvery"/> steps and the last) as (step, loss).
    /// </summary>
    /// <exception cref="GpuRnnException">The data is of another mode or holds a label the model lacks, or a setting is out of range.</exception>
    public IReadOnlyList<(long Step, float Loss)> Fit(TextData data, FitSettings? settings = null)
    {
        settings ??= new FitSettings();
        Setting.RequirePositive(settings.Steps, $"{nameof(FitSettings)}.{nameof(FitSettings.Steps)}");
        Setting.RequirePositive(settings.ReportEvery, $"{nameof(FitSettings)}.{nameof(FitSettings.ReportEvery)}");
        var batches = Batches(data, settings.Batch, settings.SeqLen, settings.Seed);
        if (trainer is null || trainer.Optimizer != settings.Optimizer)
        {
            trainer?.Dispose();
            trainer = null;
            trainer = new Trainer(Network, settings.Optimizer);
        }
        var losses = new List<(long, float)>();
        for (int i = 1; i <= settings.Steps; i++)
        {
            bool read = i % settings.ReportEvery == 0 || i == settings.Steps;
            float? loss = trainer.Step(batches.Next(), read);
            if (loss is { } l)
            {
                if (!float.IsFinite(l))
                    throw new GpuRnnException($"training diverged at step {trainer.StepCount}: the loss is {l}; lower {nameof(FitSettings)}.{nameof(FitSettings.Optimizer)}'s learning rate or clip the gradients");
                losses.Add((trainer.StepCount, l));
                settings.Progress?.Invoke(trainer.StepCount, l);
            }
        }
        return losses;
    }

    /// <summary>Scores <paramref name="data"/> (of this model's mode) without training, in batches of <paramref name="batch"/> (and windows of <paramref name="seqLen"/> for stream data).</summary>
    public Evaluation Evaluate(TextData data, int batch = 32, int seqLen = 64)
    {
        var p = Inference();
        var batches = Batches(data, batch, seqLen, seed: 0);
        switch (batches)
        {
            case StreamBatcher stream:
                var (loss, tokens) = p.Evaluate(Enumerable.Range(0, stream.WindowsPerEpoch).Select(_ => stream.Next()));
                return new Evaluation(loss, tokens);
            case SequenceBatcher sequences when Mode == DataMode.Labeled:
                var metrics = ClassifierMetrics.Compute(p, sequences, Labels);
                return new Evaluation(metrics.Loss, metrics.Count, metrics);
            case SequenceBatcher pairs when Mode == DataMode.Pairs:
                var targets = data.Targets!.Select(t => SequenceData.EncodeLine(Vocabulary, t, Tokenizer)).ToList();
                int bos = Vocabulary.IdOf(Vocabulary.Bos);
                var m = PairMetrics.Compute(p, pairs, targets, bos, Vocabulary.EndId, Excluded(bos));
                return new Evaluation(m.Loss, m.Tokens, Pairs: m);
            case SequenceBatcher lines:
                var (lineLoss, lineTokens) = p.Evaluate(lines.InOrder());
                return new Evaluation(lineLoss, lineTokens);
            default:
                throw new InvalidOperationException($"no evaluation for {batches.GetType().Name}");
        }
    }

    /// <summary>A classifier's label for <paramref name="text"/> and its probability.</summary>
    /// <exception cref="GpuRnnException">The model is not a classifier.</exception>
    public Prediction Predict(string text) => Predict([text])[0];

    /// <summary>A classifier's label and probability for each text, <paramref name="batch"/> texts per forward pass.</summary>
    public IReadOnlyList<Prediction> Predict(IEnumerable<string> texts, int batch = 64)
    {
        ArgumentNullException.ThrowIfNull(texts);
        if (!Config.IsClassifier)
            throw new GpuRnnException($"this model is {Describe()}: Predict needs a classifier (trained on labeled data)");
        Setting.RequirePositive(batch, nameof(batch));
        var seqs = texts.Select(t => SequenceData.EncodeLine(Vocabulary, t, Tokenizer)).Select(ids => ids.Length > 0 ? ids : [Math.Max(Vocabulary.UnknownId, 0)]).ToList();
        var answers = new List<Prediction>(seqs.Count);
        if (seqs.Count == 0)
            return answers;
        var data = new SequenceBatcher(seqs, new int[seqs.Count], Math.Min(batch, seqs.Count), -1, -1, seed: 0);
        int classes = Config.Classes;
        foreach (var window in data.InOrder())
        {
            var logits = Inference().ClassLogits(window);
            for (int b = 0; b < window.Batch && answers.Count < seqs.Count; b++)
            {
                var (best, probability, _) = ClassifierMetrics.Predict(logits.AsSpan(b * classes, classes));
                answers.Add(new Prediction(Labels[best], probability));
            }
        }
        return answers;
    }

    /// <summary>An encoder–decoder's greedy translation of <paramref name="source"/>: up to <paramref name="maxLength"/> tokens or <c>&lt;eos&gt;</c>.</summary>
    /// <exception cref="GpuRnnException">The model is not an encoder–decoder.</exception>
    public string Translate(string source, int maxLength = 100) => Translate([source], maxLength)[0];

    /// <summary>
    /// As <see cref="Translate(string, int)"/> for each source, <paramref name="batch"/> sources decoded together; a
    /// <paramref name="beam"/> above 1 decodes each source by a length-normalised beam search of that width instead.
    /// </summary>
    public IReadOnlyList<string> Translate(IEnumerable<string> sources, int maxLength = 100, int batch = 64, int beam = 1)
    {
        ArgumentNullException.ThrowIfNull(sources);
        Setting.RequirePositive(batch, nameof(batch));
        Setting.RequirePositive(beam, nameof(beam));
        var encoded = EncodeSources(sources, maxLength, nameof(Translate));
        var answers = new List<string>(encoded.Count);
        int bos = Vocabulary.IdOf(Vocabulary.Bos), eos = Vocabulary.EndId;
        foreach (var (window, count) in SourceWindows(encoded, batch))
        {
            var decoded = beam == 1
                ? Inference().Decode(window.Source!, count, bos, eos, maxLength, Excluded(bos))
                : Enumerable.Range(0, count).Select(i => Inference().DecodeBeam(window.Source!, i, beam, bos, eos, maxLength, Excluded(bos)).Tokens).ToArray();
            answers.AddRange(decoded.Select(ids => Vocabulary.Decode(ids, Tokenizer)));
        }
        return answers;
    }

    /// <summary>
    /// The attention weights of the greedy translation of <paramref name="source"/>: one row per output token (the
    /// decoded tokens, then <c>&lt;eos&gt;</c> if it was reached), one column per source token.
    /// </summary>
    /// <exception cref="GpuRnnException">The model is not an encoder–decoder with attention.</exception>
    public AttentionMap Attention(string source, int maxLength = 100)
    {
        if (Config.Attention == AttentionKind.None)
            throw new GpuRnnException($"this model is {Describe()} without attention: Attention needs an encoder–decoder trained with attention");
        var encoded = EncodeSources([source], maxLength, nameof(Attention));
        int bos = Vocabulary.IdOf(Vocabulary.Bos), eos = Vocabulary.EndId;
        var weights = new List<float[]>();
        var (window, _) = SourceWindows(encoded, 1).First();
        var tokens = Inference().Decode(window.Source!, 1, bos, eos, maxLength, Excluded(bos), weights)[0];
        var output = tokens.Select(id => Vocabulary[id]).Append(Vocabulary.Eos).Take(weights.Count).ToArray();
        return new AttentionMap(encoded[0].Select(id => Vocabulary[id]).ToArray(), output, weights);
    }

    private List<int[]> EncodeSources(IEnumerable<string> sources, int maxLength, string caller)
    {
        if (!Config.EncoderDecoder)
            throw new GpuRnnException($"this model is {Describe()}: {caller} needs an encoder–decoder (trained on pairs)");
        if (maxLength < 0)
            throw new GpuRnnException($"{nameof(maxLength)} must be 0 or more (got {maxLength})");
        int eos = Vocabulary.EndId;
        return sources.Select(s => SequenceData.EncodeLine(Vocabulary, s, Tokenizer)).Select(ids => ids.Length > 0 ? ids : [eos]).ToList();
    }

    /// <summary>The sources in batches of <paramref name="batch"/>, each with how many of its rows are real.</summary>
    private IEnumerable<(TokenWindow Window, int Count)> SourceWindows(List<int[]> encoded, int batch)
    {
        if (encoded.Count == 0)
            yield break;
        int bos = Vocabulary.IdOf(Vocabulary.Bos), eos = Vocabulary.EndId;
        var data = SequenceBatcher.Pairs(encoded, encoded.Select(_ => Array.Empty<int>()).ToList(), Math.Min(batch, encoded.Count), bos, eos, seed: 0);
        int done = 0;
        foreach (var window in data.InOrder())
        {
            int count = Math.Min(window.Batch, encoded.Count - done);
            yield return (window, count);
            done += count;
        }
    }

    /// <summary>
    /// A language model's continuation of <paramref name="prime"/>: up to <paramref name="length"/> tokens sampled at
    /// <paramref name="temperature"/> (0 or less: greedy) with <paramref name="seed"/>; a line model writes one line.
    /// </summary>
    /// <exception cref="GpuRnnException">The model is not a language model, or the temperature is not finite.</exception>
    public string Sample(string prime = "", int length = 200, float temperature = 1f, int seed = 0) =>
        Sample(prime, length, new SamplingOptions(temperature, Seed: seed));

    /// <summary>As <see cref="Sample(string, int, float, int)"/> with top-k / top-p as well.</summary>
    public string Sample(string prime, int length, SamplingOptions options)
    {
        if (Config.IsClassifier || Config.EncoderDecoder)
            throw new GpuRnnException($"this model is {Describe()}: Sample needs a language model (trained on stream or lines data)");
        generator ??= new Generator(Network);
        return generator.Sample(Vocabulary, Tokenizer, prime, length, options, Mode);
    }

    /// <summary>Frees the device memory (and the device, when this model opened it).</summary>
    public void Dispose()
    {
        generator?.Dispose();
        predictor?.Dispose();
        trainer?.Dispose();
        Network.Dispose();
        ownedDevice?.Dispose();
    }

    private Predictor Inference() => predictor ??= new Predictor(Network);

    private int[] Excluded(int bos) => [Vocabulary.IdOf(Vocabulary.Pad), bos];

    private string Describe() => Config.IsClassifier ? "a classifier" : Config.EncoderDecoder ? "an encoder–decoder" : "a language model";

    /// <summary>The batches of <paramref name="data"/> for this model.</summary>
    private ITrainingData Batches(TextData data, int batch, int seqLen, int seed)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (data.Mode != Mode)
            throw new GpuRnnException($"{data.Name}: {Checkpoint.ModeName(data.Mode)} data, but this model reads {Checkpoint.ModeName(Mode)} data");
        Setting.RequirePositive(batch, nameof(batch));
        Setting.RequirePositive(seqLen, nameof(seqLen));
        int bos = Vocabulary.IdOf(Vocabulary.Bos), eos = Vocabulary.EndId;
        List<int[]> Encode(IEnumerable<string> lines) => lines.Select(l => SequenceData.EncodeLine(Vocabulary, l, Tokenizer)).ToList();
        int Fit(int count) => Math.Min(batch, count);
        switch (Mode)
        {
            case DataMode.Stream:
                return new StreamBatcher(Vocabulary.Encode(data.Text!, Tokenizer), batch, seqLen);
            case DataMode.Lines:
                return new SequenceBatcher(Encode(data.Sequences), null, Fit(data.Sequences.Count), bos, eos, seed);
            case DataMode.Labeled:
                var labels = data.Labels!.Select(l => Array.IndexOf(Labels.ToArray(), l)).ToList();
                int unknown = labels.IndexOf(-1);
                if (unknown >= 0)
                    throw new GpuRnnException($"{data.Name}: label '{data.Labels![unknown]}' of example {unknown + 1} is not one of the model's [{string.Join(", ", Labels)}]");
                return new SequenceBatcher(Encode(data.Sequences), labels, Fit(labels.Count), -1, -1, seed);
            case DataMode.Pairs:
                return SequenceBatcher.Pairs(Encode(data.Sequences), Encode(data.Targets!), Fit(data.Sequences.Count), bos, eos, seed);
            default:
                throw new ArgumentOutOfRangeException(nameof(data), Mode, "unknown mode");
        }
    }
}

/// <summary>Range checks of settings, named as the library names them (the runner maps the names to its flags).</summary>
internal static class Setting
{
    public static void RequirePositive(int value, string name)
    {
        if (value < 1)
            throw new GpuRnnException(name, $"must be a positive integer (got {value})");
    }
}
