using System.Text.Json;
using System.Text.Json.Nodes;
using GpuRnn.Kernels;

namespace GpuRnn.Checkpoints;

/// <summary>
/// Where a run stands, everything a resumed run needs to continue exactly (with the weights, the
/// optimizer slots and the carried hidden state, stored as tensors).
/// </summary>
/// <param name="Step">Optimizer updates done.</param>
/// <param name="Epoch">Epoch of the next training window.</param>
/// <param name="Position">Start of the next training window within the streams.</param>
/// <param name="Batch">B of the run.</param>
/// <param name="SeqLen">T of the run.</param>
/// <param name="ValFraction">Held-out tail of the data.</param>
/// <param name="Optimizer">The update rule and its settings.</param>
/// <param name="Seed">The run's seed.</param>
/// <param name="BestValidationLoss">Lowest validation loss so far (NaN if never evaluated).</param>
/// <param name="Schedule">The learning-rate schedule (null: constant).</param>
/// <param name="Reductions">Plateau reductions of the learning rate so far.</param>
/// <param name="EvaluationsSinceBest">Evaluations since the last new best validation loss (plateau and early stopping count them).</param>
public sealed record TrainingState(long Step, int Epoch, int Position, int Batch, int SeqLen, double ValFraction, OptimizerSettings Optimizer, int Seed, double BestValidationLoss,
    LearningRateSchedule? Schedule = null, int Reductions = 0, int EvaluationsSinceBest = 0);

/// <summary>
/// A model on disk (DESIGN.md §7): safetensors with PyTorch <c>state_dict</c> names, the vocabulary,
/// tokenizer and config in the metadata, and, for resuming, the optimizer state as
/// <c>optim.&lt;param&gt;.&lt;slot&gt;</c> tensors, the carried state as <c>state.h_l{k}</c> [B, H]
/// (and an LSTM's <c>state.c_l{k}</c>) and the position in <c>gpurnn.train</c>. A file with only the
/// model tensors and <c>gpurnn.vocab</c> (how a PyTorch model comes in) is valid: sizes, and the cell
/// (rows of <c>weight_hh_l0</c> ÷ its columns: 1, 3 or 4), are read off the tensors.
/// </summary>
public sealed class Checkpoint
{
    /// <summary>Metadata keys.</summary>
    public const string VocabKey = "gpurnn.vocab", TokenizerKey = "gpurnn.tokenizer", ConfigKey = "gpurnn.config", TrainKey = "gpurnn.train", DataKey = "gpurnn.data",
        HistoryKey = "gpurnn.history";

    private Checkpoint(string source, ModelConfig config, Vocabulary vocabulary, TokenizerKind tokenizer,
        Dictionary<string, float[]> weights, TrainingState? training, Dictionary<string, float[]> slots, float[][] hidden, float[][] cells, IReadOnlyDictionary<string, string> metadata)
    {
        Source = source;
        Config = config;
        Vocabulary = vocabulary;
        Tokenizer = tokenizer;
        Weights = weights;
        Training = training;
        OptimizerSlots = slots;
        HiddenState = hidden;
        CellState = cells;
        Metadata = metadata;
    }

    /// <summary>The file it was read from.</summary>
    public string Source { get; }

    /// <summary>Sizes read off the tensors.</summary>
    public ModelConfig Config { get; }

    /// <summary>The vocabulary (wins over one rebuilt from data: DESIGN.md §6).</summary>
    public Vocabulary Vocabulary { get; }

    /// <summary>How text becomes tokens for this model.</summary>
    public TokenizerKind Tokenizer { get; }

    /// <summary>The model tensors by PyTorch name.</summary>
    public IReadOnlyDictionary<string, float[]> Weights { get; }

    /// <summary>Resume state, or null for a weights-only file.</summary>
    public TrainingState? Training { get; }

    /// <summary>Optimizer state tensors by <c>optim.&lt;param&gt;.&lt;slot&gt;</c> name.</summary>
    public IReadOnlyDictionary<string, float[]> OptimizerSlots { get; }

    /// <summary>Carried hidden state per layer [B·H] (empty for a weights-only file).</summary>
    public IReadOnlyList<float[]> HiddenState { get; }

    /// <summary>An LSTM's carried cell state per layer [B·H] (empty for a weights-only file and for other cells).</summary>
    public IReadOnlyList<float[]> CellState { get; }

    /// <summary>How the model was trained: stream, lines or labelled data (stream when the file does not say).</summary>
    public DataMode Mode { get; private init; }

    /// <summary>The class names of a classifier in class-index order; empty for a language model.</summary>
    public IReadOnlyList<string> Labels { get; private init; } = [];

    /// <summary>All metadata as stored.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>What the run was trained on (null for a file that does not say, such as a PyTorch export).</summary>
    public DataIdentity? Data { get; private init; }

    /// <summary>The run's loss curves from its first step (null for a file that does not hold them, such as a PyTorch export).</summary>
    public TrainingHistory? History { get; private init; }

    /// <summary>
    /// Model tensors holding NaN or infinite values, with how many: always empty unless the file was loaded with
    /// <c>allowNonFinite</c> (a load otherwise refuses such a file).
    /// </summary>
    public IReadOnlyDictionary<string, int> NonFinite { get; private init; } = new Dictionary<string, int>();

    /// <summary>Saves <paramref name="model"/> (and, when given, the trainer's full resume state) atomically.</summary>
    /// <param name="path">Target file (replaced atomically).</param>
    /// <param name="model">The model.</param>
    /// <param name="vocabulary">Its vocabulary.</param>
    /// <param name="tokenizer">Its tokenizer.</param>
    /// <param name="trainer">With <paramref name="training"/>: the optimizer state and carried hidden state to store for resuming.</param>
    /// <param name="training">Where the run stands.</param>
    /// <param name="mode">The data mode, so that sample, eval and predict treat the model right.</param>
    /// <param name="labels">A classifier's class names in index order.</param>
    /// <param name="data">What the model was trained on (recorded so that a resume can refuse other data).</param>
    /// <param name="history">The run's curves (so that a resumed run's plot covers the whole run).</param>
    public static void Save(string path, RnnModel model, Vocabulary vocabulary, TokenizerKind tokenizer, Trainer? trainer = null, TrainingState? training = null,
        DataMode mode = DataMode.Stream, IReadOnlyList<string>? labels = null, DataIdentity? data = null, TrainingHistory? history = null)
    {
        if (model.Config.IsClassifier != (labels is not null) || (labels is not null && labels.Count != model.Config.Classes))
            throw new ArgumentException("a classifier needs exactly one label name per class, a language model none.", nameof(labels));
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(vocabulary);
        var c = model.Config;
        var tensors = model.Layout.Tensors.Select(t => new TensorEntry(t.Name, t.Shape, model.GetTensor(t.Name))).ToList();
        var metadata = new Dictionary<string, string>
        {
            [VocabKey] = JsonSerializer.Serialize(vocabulary.Tokens),
            [TokenizerKey] = GpuRnn.Tokenizer.Name(tokenizer),
            [ConfigKey] = new JsonObject
            {
                ["task"] = c.IsClassifier ? "classifier" : c.EncoderDecoder ? "seq2seq" : "lm",
                ["mode"] = ModeName(mode),
                ["cell"] = CellName(c.Cell),
                ["attention"] = AttentionNames.Name(c.Attention),
                ["vocab"] = c.Vocab,
                ["hidden"] = c.Hidden,
                ["layers"] = c.Layers,
                ["bidirectional"] = c.Bidirectional,
                ["special_tokens"] = new JsonObject(Vocabulary.Specials.Select(s => KeyValuePair.Create(s, (JsonNode?)vocabulary.IdOf(s)))),
                ["labels"] = labels is null ? null : new JsonArray(labels.Select(l => (JsonNode?)JsonValue.Create(l)).ToArray()),
                ["dropout"] = c.Dropout > 0f ? c.Dropout : null, // a training setting of the model (absent: 0)
            }.ToJsonString(),
        };
        if (data is not null)
            metadata[DataKey] = data.ToJson();
        if (history is not null)
            metadata[HistoryKey] = history.ToJson();
        if (trainer is not null && training is not null)
        {
            var names = trainer.Optimizer.SlotNames;
            for (int slot = 0; slot < names.Count; slot++)
            {
                var flat = trainer.GetSlot(slot);
                foreach (var t in model.Layout.Tensors)
                    tensors.Add(new TensorEntry($"optim.{t.Name}.{names[slot]}", t.Shape, flat.AsSpan((int)t.Offset, (int)t.Length).ToArray()));
            }
            for (int layer = 0; layer < c.Layers; layer++)
            {
                var h = trainer.GetState(layer) ?? new float[training.Batch * c.Hidden];
                tensors.Add(new TensorEntry($"state.h_l{layer}", [training.Batch, c.Hidden], h));
            }
            if (CellShapes.HasCellState(c.Cell))
            {
                for (int layer = 0; layer < c.Layers; layer++)
                    tensors.Add(new TensorEntry($"state.c_l{layer}", [training.Batch, c.Hidden], trainer.GetCellState(layer) ?? new float[training.Batch * c.Hidden]));
            }
            metadata[TrainKey] = JsonSerializer.Serialize(new TrainJson(training.Step, training.Epoch, training.Position, training.Batch, training.SeqLen,
                training.ValFraction, OptimizerName(training.Optimizer.Kind), training.Optimizer.LearningRate, training.Optimizer.Momentum,
                training.Optimizer.ClipNorm, training.Optimizer.ClipValue, training.Seed,
                double.IsNaN(training.BestValidationLoss) ? null : training.BestValidationLoss)
            {
                Schedule = training.Schedule is { } s ? new ScheduleJson(LearningRateSchedule.Name(s.Kind), s.Decay, s.DecayAfter, s.DecayEvery, s.Min, s.Patience, s.Horizon) : null,
                LrReductions = training.Reductions,
                EvalsSinceBest = training.EvaluationsSinceBest,
            });
        }
        new SafeTensorsFile(tensors, metadata).Write(path);
        RemoveStaleTemporaries(path);
    }

    /// <summary>
    /// Deletes temporary files that a writer killed mid-save left beside <paramref name="path"/>
    /// (<c>.name.*.tmp</c>); the run holds the output lock, so no other writer can own one.
    /// </summary>
    private static void RemoveStaleTemporaries(string path)
    {
        string full = Path.GetFullPath(path);
        string folder = Path.GetDirectoryName(full)!;
        foreach (string temp in Directory.EnumerateFiles(folder, $".{Path.GetFileName(full)}.*.tmp"))
        {
            try
            {
                File.Delete(temp);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // best effort: a leftover temporary file never affects the checkpoint itself
            }
        }
    }

    /// <summary>
    /// Reads and checks a checkpoint; every problem is a one-line error naming the file. Weights that are NaN or
    /// infinite (a damaged file, or one saved from a diverged run) are refused, naming the tensor, unless
    /// <paramref name="allowNonFinite"/> (for <c>info</c>, which reports them in <see cref="NonFinite"/>).
    /// </summary>
    /// <exception cref="GpuRnnException">The file is missing, malformed or inconsistent.</exception>
    public static Checkpoint Load(string path, bool allowNonFinite = false)
    {
        var file = SafeTensorsFile.Read(path);
        GpuRnnException Bad(string why) => new($"{path}: {why}");

        var shapes = file.Tensors.ToDictionary(t => t.Name, t => t.Shape, StringComparer.Ordinal);
        int[] Shape(string name) => shapes.TryGetValue(name, out var s) ? s : throw Bad($"tensor '{name}' is missing");
        bool encoderDecoder = shapes.ContainsKey("encoder.rnn.weight_hh_l0");
        // PyTorch's bidirectional=True: the classifier's stack (or the encoder) has *_reverse tensors.
        bool bidirectional = shapes.ContainsKey((encoderDecoder ? "encoder.rnn." : "rnn.") + "weight_ih_l0_reverse");
        string stack = encoderDecoder ? "decoder.rnn." : "rnn.", head = encoderDecoder ? "decoder.out." : "decoder.";
        var hh = Shape(stack + "weight_hh_l0");
        var ih = Shape(stack + "weight_ih_l0");
        var dec = Shape(head + "weight");
        if (hh.Length != 2 || ih.Length != 2 || dec.Length != 2)
            throw Bad($"{stack}weight_hh_l0 {Show(hh)}, {stack}weight_ih_l0 {Show(ih)} and {head}weight {Show(dec)} must be matrices");
        int layers = 0;
        while (shapes.ContainsKey($"{stack}weight_hh_l{layers}"))
            layers++;
        var (mode, labels, configCell, dropout, configBidirectional) = ParseConfig(file.Metadata, Bad);
        if (configBidirectional is { } said && said != bidirectional)
            throw Bad($"'{ConfigKey}' says bidirectional {(said ? "true" : "false")} but the tensors {(bidirectional ? "have" : "have no")} '*_reverse' directions");
        // The cell from the shapes: weight_hh_l{k} is [g·H, H] with g = 1 (nn.RNN), 3 (nn.GRU) or 4 (nn.LSTM).
        int hidden = hh[1];
        int gates = hidden > 0 && hh[0] % hidden == 0 ? hh[0] / hidden : 0;
        if (gates is not (1 or 3 or 4))
            throw Bad($"{stack}weight_hh_l0 has shape {Show(hh)}: a layer of H = {hidden} needs {hidden}, {3 * hidden} or {4 * hidden} rows (nn.RNN, nn.GRU or nn.LSTM)");
        var cell = (CellKind)gates;
        if (configCell is not null && configCell != cell)
            throw Bad($"'{ConfigKey}' says cell {CellName(configCell.Value)} but {stack}weight_hh_l0 {Show(hh)} has the shape of {CellTitle(cell)}");
        if (encoderDecoder && !file.Metadata.ContainsKey(ConfigKey))
            mode = DataMode.Pairs; // a bare PyTorch export: the tensor names say what it is
        if (labels is not null && (labels.Length != dec[0] || encoderDecoder))
            throw Bad($"{labels.Length} labels in '{ConfigKey}' but {head}weight has {dec[0]} rows");
        if (labels is null && dec[0] != ih[1])
            throw Bad($"{head}weight has {dec[0]} rows but {stack}weight_ih_l0 reads V = {ih[1]}; a language model predicts its own vocabulary");
        if (encoderDecoder != (mode == DataMode.Pairs) && shapes.Count > 0 && file.Metadata.ContainsKey(ConfigKey))
            throw Bad($"'{ConfigKey}' says mode {ModeName(mode)} but the tensors are {(encoderDecoder ? "an encoder–decoder's" : "a single stack's")}");
        if (bidirectional && labels is null && !encoderDecoder)
            throw Bad("the tensors have '*_reverse' directions but no classifier labels: a language model cannot be bidirectional");
        // The attention from the tensors: attention.combine.weight (Luong), with attention.weight for general; attention.score.weight (Bahdanau).
        var attention = shapes.ContainsKey("attention.score.weight") ? AttentionKind.Additive
            : !shapes.ContainsKey("attention.combine.weight") ? AttentionKind.None
            : shapes.ContainsKey("attention.weight") ? AttentionKind.General : AttentionKind.Dot;
        if (attention != AttentionKind.None && !encoderDecoder)
            throw Bad($"attention tensors in a model without an encoder (attention needs pairs mode)");
        var config = new ModelConfig(ih[1], hidden, layers, labels?.Length ?? 0, encoderDecoder, cell, dropout, bidirectional, attention);
        if (config.Vocab < 1 || config.Hidden < 1)
            throw Bad($"sizes V={config.Vocab}, H={config.Hidden} read off the tensors must be positive");
        var layout = new ParameterLayout(config);

        var weights = new Dictionary<string, float[]>(StringComparer.Ordinal);
        foreach (var t in layout.Tensors)
        {
            var entry = file.Find(t.Name) ?? throw Bad($"tensor '{t.Name}' is missing for {CellName(cell)} L={layers}, H={config.Hidden}, V={config.Vocab}");
            if (!entry.Shape.SequenceEqual(t.Shape))
                throw Bad($"tensor '{t.Name}' has shape {Show(entry.Shape)}; {CellName(cell)} L={layers}, H={config.Hidden}, V={config.Vocab} needs {Show(t.Shape)}");
            weights[t.Name] = entry.Data;
        }
        var nonFinite = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var t in layout.Tensors)
        {
            int count = weights[t.Name].Count(v => !float.IsFinite(v));
            if (count == 0)
                continue;
            if (!allowNonFinite)
                throw Bad($"tensor '{t.Name}' holds {count} value{(count == 1 ? "" : "s")} that {(count == 1 ? "is" : "are")} not finite (NaN or infinity) of {t.Length}; the file is damaged or was saved from a diverged run");
            nonFinite[t.Name] = count;
        }

        if (!file.Metadata.TryGetValue(VocabKey, out string? vocabJson))
            throw Bad($"metadata '{VocabKey}' is missing (a JSON array of the tokens in id order)");
        string[] tokens;
        try
        {
            tokens = JsonSerializer.Deserialize<string[]>(vocabJson) ?? throw new JsonException("null");
        }
        catch (JsonException)
        {
            throw Bad($"metadata '{VocabKey}' is not a JSON array of strings");
        }
        if (tokens.Length != config.Vocab)
            throw Bad($"the vocabulary has {tokens.Length} tokens but {stack}weight_ih_l0 says V = {config.Vocab}");
        Vocabulary vocabulary;
        try
        {
            vocabulary = new Vocabulary(tokens);
        }
        catch (GpuRnnException e)
        {
            throw Bad(e.Message);
        }
        var tokenizer = file.Metadata.TryGetValue(TokenizerKey, out string? tok) ? ParseTokenizer(tok, Bad) : TokenizerKind.Char;

        TrainingState? training = null;
        var slots = new Dictionary<string, float[]>(StringComparer.Ordinal);
        var states = new List<float[]>();
        var cells = new List<float[]>();
        var stateNames = new HashSet<string>(StringComparer.Ordinal);
        if (file.Metadata.TryGetValue(TrainKey, out string? trainJson))
        {
            training = ParseTraining(trainJson, Bad);
            foreach (string slot in training.Optimizer.SlotNames)
            {
                foreach (var t in layout.Tensors)
                {
                    string name = $"optim.{t.Name}.{slot}";
                    var entry = file.Find(name) ?? throw Bad($"resume state: tensor '{name}' is missing");
                    if (!entry.Shape.SequenceEqual(t.Shape))
                        throw Bad($"resume state: tensor '{name}' has shape {Show(entry.Shape)}, expected {Show(t.Shape)}");
                    slots[name] = entry.Data;
                }
            }
            float[] State(string name)
            {
                var entry = file.Find(name) ?? throw Bad($"resume state: tensor '{name}' is missing");
                if (!entry.Shape.SequenceEqual(new[] { training.Batch, config.Hidden }))
                    throw Bad($"resume state: tensor '{name}' has shape {Show(entry.Shape)}, expected [{training.Batch}, {config.Hidden}]");
                stateNames.Add(name);
                return entry.Data;
            }
            for (int layer = 0; layer < layers; layer++)
                states.Add(State($"state.h_l{layer}"));
            if (CellShapes.HasCellState(cell))
            {
                for (int layer = 0; layer < layers; layer++)
                    cells.Add(State($"state.c_l{layer}"));
            }
        }
        foreach (var t in file.Tensors)
        {
            if (!weights.ContainsKey(t.Name) && !slots.ContainsKey(t.Name) && !stateNames.Contains(t.Name))
                throw Bad($"unexpected tensor '{t.Name}' for an L={layers} {CellName(cell)} model");
        }
        var data = file.Metadata.TryGetValue(DataKey, out string? dataJson) ? DataIdentity.Parse(dataJson, Bad) : null;
        var history = file.Metadata.TryGetValue(HistoryKey, out string? historyJson) ? TrainingHistory.Parse(historyJson, Bad) : null;
        return new Checkpoint(path, config, vocabulary, tokenizer, weights, training, slots, states.ToArray(), cells.ToArray(), file.Metadata)
        {
            Mode = mode, Labels = labels ?? [], Data = data, NonFinite = nonFinite, History = history,
        };
    }

    /// <summary>True when <paramref name="path"/> is a safetensors file that GpuRnn wrote (its metadata holds a vocabulary).</summary>
    public static bool IsCheckpointFile(string path)
    {
        try
        {
            return SafeTensorsFile.Read(path).Metadata.ContainsKey(VocabKey);
        }
        catch (GpuRnnException)
        {
            return false;
        }
    }

    /// <summary>Creates the model on <paramref name="device"/> with these weights (and, when given, another training <paramref name="dropout"/>).</summary>
    public RnnModel CreateModel(GpuDevice device, float? dropout = null)
    {
        var model = new RnnModel(device, Config with { Dropout = dropout ?? Config.Dropout }, seed: 0);
        foreach (var (name, data) in Weights)
            model.SetTensor(name, data);
        return model;
    }

    /// <summary>Puts the optimizer state, step count and carried hidden state into <paramref name="trainer"/> (resume).</summary>
    /// <exception cref="GpuRnnException">This checkpoint has no resume state, or one for another optimizer.</exception>
    public void RestoreTrainer(Trainer trainer, RnnModel model)
    {
        ArgumentNullException.ThrowIfNull(trainer);
        var t = Training ?? throw new GpuRnnException($"{Source}: it holds no resume state (only weights); use --init to start from it");
        if (t.Optimizer != trainer.Optimizer)
            throw new GpuRnnException($"{Source}: it was trained with {OptimizerName(t.Optimizer.Kind)} settings {t.Optimizer}; this run has {trainer.Optimizer}");
        var names = trainer.Optimizer.SlotNames;
        for (int slot = 0; slot < names.Count; slot++)
        {
            var flat = new float[model.Layout.Count];
            foreach (var p in model.Layout.Tensors)
                OptimizerSlots[$"optim.{p.Name}.{names[slot]}"].CopyTo(flat, p.Offset);
            trainer.SetSlot(slot, flat);
        }
        trainer.StepCount = t.Step;
        if (Mode == DataMode.Stream)
            trainer.SetState(t.Batch, t.SeqLen, HiddenState, CellShapes.HasCellState(Config.Cell) ? CellState : null); // sequence modes start every batch from zero (or the encoder)
    }

    /// <summary>The command-line name of an optimizer.</summary>
    public static string OptimizerName(OptimizerKind kind) => kind switch
    {
        OptimizerKind.Sgd => "sgd",
        OptimizerKind.Adagrad => "adagrad",
        OptimizerKind.RmsProp => "rmsprop",
        OptimizerKind.Adam => "adam",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown optimizer"),
    };

    /// <summary>The optimizer of a command-line name.</summary>
    /// <exception cref="GpuRnnException">Unknown name.</exception>
    public static OptimizerKind ParseOptimizer(string name) => name switch
    {
        "sgd" => OptimizerKind.Sgd,
        "adagrad" => OptimizerKind.Adagrad,
        "rmsprop" => OptimizerKind.RmsProp,
        "adam" => OptimizerKind.Adam,
        _ => throw new GpuRnnException("optimizer", $"{name}: use sgd, adam, adagrad or rmsprop"),
    };

    /// <summary>The name of a cell in <c>gpurnn.config</c> and on the command line: <c>rnn</c>, <c>gru</c> or <c>lstm</c>.</summary>
    public static string CellName(CellKind cell) => cell switch
    {
        CellKind.Elman => "rnn",
        CellKind.Gru => "gru",
        CellKind.Lstm => "lstm",
        _ => throw new ArgumentOutOfRangeException(nameof(cell), cell, "unknown cell"),
    };

    /// <summary>The cell of a name; <c>rnn_tanh</c> is what earlier checkpoints wrote for the Elman cell.</summary>
    /// <exception cref="GpuRnnException">Unknown name.</exception>
    public static CellKind ParseCell(string name) => name switch
    {
        "rnn" or "rnn_tanh" => CellKind.Elman,
        "gru" => CellKind.Gru,
        "lstm" => CellKind.Lstm,
        _ => throw new GpuRnnException("cell", $"{name}: use rnn, gru or lstm"),
    };

    /// <summary>How a cell reads in prose: "Elman RNN (tanh)", "GRU", "LSTM".</summary>
    public static string CellTitle(CellKind cell) => cell switch
    {
        CellKind.Elman => "Elman RNN (tanh)",
        CellKind.Gru => "GRU",
        CellKind.Lstm => "LSTM",
        _ => throw new ArgumentOutOfRangeException(nameof(cell), cell, "unknown cell"),
    };

    /// <summary>The command-line name of a data mode.</summary>
    public static string ModeName(DataMode mode) => mode switch
    {
        DataMode.Stream => "stream",
        DataMode.Lines => "lines",
        DataMode.Labeled => "labeled",
        DataMode.Pairs => "pairs",
        _ => throw new ArgumentOutOfRangeException(nameof(mode), mode, "unknown mode"),
    };

    /// <summary>The data mode of a command-line name.</summary>
    /// <exception cref="GpuRnnException">Unknown name.</exception>
    public static DataMode ParseMode(string name) => name switch
    {
        "stream" => DataMode.Stream,
        "lines" => DataMode.Lines,
        "labeled" => DataMode.Labeled,
        "pairs" => DataMode.Pairs,
        _ => throw new GpuRnnException("mode", $"{name}: use stream, lines, labeled or pairs"),
    };

    /// <summary>Mode, labels, cell, dropout and directions from <c>gpurnn.config</c> (absent: a stream language model, as a PyTorch export is, the cell and directions of the shapes, no dropout).</summary>
    private static (DataMode Mode, string[]? Labels, CellKind? Cell, float Dropout, bool? Bidirectional) ParseConfig(IReadOnlyDictionary<string, string> metadata, Func<string, GpuRnnException> bad)
    {
        if (!metadata.TryGetValue(ConfigKey, out string? json))
            return (DataMode.Stream, null, null, 0f, null);
        try
        {
            var node = JsonNode.Parse(json) as JsonObject ?? throw new JsonException("not an object");
            var mode = node["mode"] is JsonValue m ? ParseMode(m.GetValue<string>()) : DataMode.Stream;
            string[]? labels = node["labels"] is JsonArray a ? a.Select(x => x?.GetValue<string>() ?? throw new JsonException("null label")).ToArray() : null;
            if (labels is not null && (labels.Length < 2 || labels.Distinct(StringComparer.Ordinal).Count() != labels.Length))
                throw new JsonException("labels must be at least 2 distinct names");
            CellKind? cell = node["cell"] is JsonValue c ? ParseCell(c.GetValue<string>()) : null;
            float dropout = node["dropout"] is JsonValue d ? d.GetValue<float>() : 0f;
            if (!(dropout >= 0f && dropout < 1f))
                throw new JsonException($"dropout {dropout} is outside [0, 1)");
            bool? bidirectional = node["bidirectional"] is JsonValue b ? b.GetValue<bool>() : null;
            return (mode, labels, cell, dropout, bidirectional);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException or GpuRnnException)
        {
            throw bad($"metadata '{ConfigKey}' is malformed: {e.Message.Split('\n')[0]}");
        }
    }

    private static TokenizerKind ParseTokenizer(string name, Func<string, GpuRnnException> bad)
    {
        try
        {
            return GpuRnn.Tokenizer.Parse(name);
        }
        catch (GpuRnnException)
        {
            throw bad($"metadata '{TokenizerKey}' is '{name}'; expected char or word");
        }
    }

    private static TrainingState ParseTraining(string json, Func<string, GpuRnnException> bad)
    {
        TrainJson? t;
        try
        {
            t = JsonSerializer.Deserialize<TrainJson>(json);
        }
        catch (JsonException e)
        {
            throw bad($"metadata '{TrainKey}' is malformed: {e.Message.Split('\n')[0]}");
        }
        if (t is null || t.Step < 0 || t.Epoch < 0 || t.Position < 0 || t.Batch < 1 || t.SeqLen < 1 || !(t.ValFraction >= 0 && t.ValFraction < 1))
            throw bad($"metadata '{TrainKey}' has out-of-range values");
        OptimizerKind kind;
        try
        {
            kind = ParseOptimizer(t.Optimizer);
        }
        catch (GpuRnnException)
        {
            throw bad($"metadata '{TrainKey}' names an unknown optimizer '{t.Optimizer}'");
        }
        var optimizer = new OptimizerSettings(kind, t.Lr, t.Momentum, t.ClipNorm, t.ClipValue);
        try
        {
            optimizer.Validate();
        }
        catch (GpuRnnException e)
        {
            throw bad($"metadata '{TrainKey}': {e.Message}");
        }
        LearningRateSchedule? schedule = null;
        try
        {
            if (t.Schedule is { } s)
            {
                schedule = new LearningRateSchedule(LearningRateSchedule.Parse(s.Kind), s.Decay, s.DecayAfter, s.DecayEvery, s.Min, s.Patience, s.Steps);
                schedule.Validate();
            }
        }
        catch (GpuRnnException e)
        {
            throw bad($"metadata '{TrainKey}': schedule: {e.Message}");
        }
        if (t.LrReductions < 0 || t.EvalsSinceBest < 0)
            throw bad($"metadata '{TrainKey}' has out-of-range values");
        return new TrainingState(t.Step, t.Epoch, t.Position, t.Batch, t.SeqLen, t.ValFraction, optimizer, t.Seed, t.BestValLoss ?? double.NaN, schedule, t.LrReductions, t.EvalsSinceBest);
    }

    private static string Show(int[] shape) => "[" + string.Join(", ", shape) + "]";

    /// <summary>The JSON of <c>gpurnn.train</c>.</summary>
    private sealed record TrainJson(long Step, int Epoch, int Position, int Batch, int SeqLen, double ValFraction,
        string Optimizer, float Lr, float Momentum, float ClipNorm, float ClipValue, int Seed, double? BestValLoss)
    {
        /// <summary>The learning-rate schedule (absent: constant, as files written before schedules).</summary>
        public ScheduleJson? Schedule { get; init; }

        public int LrReductions { get; init; }

        public int EvalsSinceBest { get; init; }
    }

    /// <summary>A <see cref="LearningRateSchedule"/> in <c>gpurnn.train</c>.</summary>
    private sealed record ScheduleJson(string Kind, double Decay, long DecayAfter, long DecayEvery, double Min, int Patience, long Steps);
}
