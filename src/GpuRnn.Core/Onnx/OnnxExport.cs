using System.Text.Json;
using GpuRnn.Checkpoints;
using GpuRnn.Kernels;
using Google.Protobuf;
using Onnx;
using DataType = Onnx.TensorProto.Types.DataType;

namespace GpuRnn;

/// <summary>
/// Writes a checkpoint as an ONNX model (opset 17) that ONNX Runtime runs with its own <c>RNN</c>, <c>GRU</c> and
/// <c>LSTM</c> operators (<see cref="OnnxRecurrent"/> maps the gate orders). All tensors are time-major, as the engine's
/// windows and ONNX's default RNN layout are: T steps, B sequences. Token ids and lengths are int64; positions past a
/// sequence's length may hold any valid id (<c>&lt;pad&gt;</c>, 0) and their outputs are meaningless.
/// <list type="table">
/// <item><term>language model (stream, lines)</term><description>inputs <c>input_ids</c> [T, B], <c>lengths</c> [B],
/// <c>h0</c> [L, B, H] (and <c>c0</c> for an LSTM; zeros to start); outputs <c>logits</c> [T, B, V], <c>h_n</c> [L, B, H]
/// (and <c>c_n</c>) after each sequence's last true step: feed them back as <c>h0</c>/<c>c0</c> to continue (streaming generation).</description></item>
/// <item><term>classifier (labeled)</term><description>inputs <c>input_ids</c> [T, B], <c>lengths</c> [B]; outputs
/// <c>logits</c> [B, C] and <c>probabilities</c> [B, C] (softmax) from each sequence's last true step (bidirectional: from
/// [forward after the last token; reverse after the first]).</description></item>
/// <item><term>encoder–decoder (pairs)</term><description>inputs <c>source_ids</c> [S, B], <c>source_lengths</c> [B],
/// <c>decoder_input_ids</c> [T, B] (<c>&lt;bos&gt;</c> then the target so far: teacher forcing), <c>decoder_lengths</c> [B];
/// outputs <c>logits</c> [T, B, V] of the decoder, and its <c>h_n</c> (and <c>c_n</c>); with attention (dot, general, additive)
/// also <c>attention</c> [B, T, S], batch-major: each decoder step's weights over the source, exactly 0 past its length (every
/// source length must be at least 1). A bidirectional encoder starts each decoder layer from the sum of its two final
/// states, and its attention memory is the sum of both directions' outputs (DESIGN.md §3d). Greedy decoding is the
/// caller's loop: append the arg-max of the last step's logits and run again, until <c>&lt;eos&gt;</c>.</description></item>
/// </list>
/// Bidirectional layers are ONNX's <c>direction="bidirectional"</c> (<see cref="OnnxRecurrent"/>); Luong attention is a subgraph
/// of standard operators after the decoder, Bahdanau's a <c>Scan</c> over the first decoder layer's steps (<see cref="OnnxAttention"/>).
/// The metadata (<c>metadata_props</c>) holds <c>gpurnn.vocab</c> (JSON array of the tokens in id order),
/// <c>gpurnn.tokenizer</c>, <c>gpurnn.mode</c>, the checkpoint's <c>gpurnn.config</c> and, for a classifier,
/// <c>gpurnn.labels</c> (JSON array of the class names in index order).
/// </summary>
public static class OnnxExport
{
    /// <summary>Graph input and output names (<see cref="AttentionWeights"/>: the weights [B, T, S] of a model with attention).</summary>
    public const string InputIds = "input_ids", Lengths = "lengths", InitialH = "h0", InitialC = "c0",
        SourceIds = "source_ids", SourceLengths = "source_lengths", DecoderInputIds = "decoder_input_ids", DecoderLengths = "decoder_lengths",
        Logits = "logits", Probabilities = "probabilities", FinalH = "h_n", FinalC = "c_n", AttentionWeights = "attention";

    /// <summary>Metadata keys added beside the checkpoint's own (<see cref="Checkpoint.VocabKey"/>, <see cref="Checkpoint.TokenizerKey"/>, <see cref="Checkpoint.ConfigKey"/>).</summary>
    public const string ModeKey = "gpurnn.mode", LabelsKey = "gpurnn.labels";

    /// <summary>The ONNX operator set the models use.</summary>
    public const int Opset = 17;

    /// <summary>The producer name written into every model; only a file carrying it may be overwritten by <see cref="Write"/>.</summary>
    public const string Producer = "gpurnn";

    private const int IrVersion = 8; // the IR of opset 17 (ONNX 1.12)

    /// <summary>
    /// Writes <paramref name="checkpoint"/> to <paramref name="path"/> as an ONNX model, atomically (a temporary file
    /// renamed over the target, so a failure never leaves half a model). An existing file is replaced only when it is
    /// an ONNX model that GpuRnn wrote.
    /// </summary>
    /// <exception cref="GpuRnnException">The model cannot be exported (a tensor the graph has no place for), or
    /// <paramref name="path"/> is a folder, another kind of file, or cannot be written; the message names the file.</exception>
    public static void Write(Checkpoint checkpoint, string path)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(path);
        byte[] bytes = Serialize(checkpoint); // everything is checked before the target is touched
        if (Directory.Exists(path))
            throw new GpuRnnException($"{path}: is a folder; name the .onnx file to write");
        if (File.Exists(path) && !IsExportedModel(path))
            throw new GpuRnnException($"{path}: exists and is not an ONNX model written by GpuRnn; not overwriting it");
        AtomicFile.Write(path, stream => stream.Write(bytes));
    }

    /// <summary>The ONNX model of <paramref name="checkpoint"/> as bytes (e.g. for an <c>InferenceSession</c>).</summary>
    /// <exception cref="GpuRnnException">The model cannot be exported (a tensor the graph has no place for); the message names the checkpoint.</exception>
    public static byte[] Serialize(Checkpoint checkpoint)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        return Build(checkpoint).ToByteArray();
    }

    /// <summary>True when <paramref name="path"/> holds an ONNX model whose producer is GpuRnn.</summary>
    public static bool IsExportedModel(string path)
    {
        try
        {
            using var stream = File.OpenRead(path);
            return ModelProto.Parser.ParseFrom(stream).ProducerName == Producer;
        }
        catch (Exception e) when (e is InvalidProtocolBufferException or IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static ModelProto Build(Checkpoint c)
    {
        var config = c.Config;
        var layout = new ParameterLayout(config);
        var exported = new HashSet<string>(StringComparer.Ordinal);
        float[] Take(ParameterTensor t)
        {
            exported.Add(t.Name);
            return c.Weights[t.Name];
        }
        var g = new OnnxGraph(config.EncoderDecoder ? "gpurnn_encoder_decoder" : config.IsClassifier ? "gpurnn_classifier" : "gpurnn_language_model");
        if (config.EncoderDecoder)
            EncoderDecoder(g, layout, Take);
        else if (config.IsClassifier)
            Classifier(g, layout, Take);
        else
            LanguageModel(g, layout, Take);
        // Anything the graph did not use (a tensor of a kind added to the engine later) would be silently dropped: refuse instead.
        string? left = c.Weights.Keys.Where(n => !exported.Contains(n)).Order(StringComparer.Ordinal).FirstOrDefault();
        if (left is not null)
            throw new GpuRnnException($"{c.Source}: tensor '{left}' has no place in the exported ONNX graph; this model cannot be exported yet");

        var model = new ModelProto
        {
            IrVersion = IrVersion,
            ProducerName = Producer,
            ProducerVersion = typeof(OnnxExport).Assembly.GetName().Version?.ToString() ?? "",
            DocString = $"GpuRnn {Checkpoint.CellTitle(config.Cell)} ({Checkpoint.ModeName(c.Mode)}{(config.Bidirectional ? ", bidirectional" : "")}"
                + $"{(config.Attention == AttentionKind.None ? "" : ", " + AttentionNames.Title(config.Attention) + " attention")}), "
                + $"L={config.Layers} H={config.Hidden} V={config.Vocab}; time-major [T, B]: see the README's 'Export to ONNX'",
            Graph = g.Proto,
        };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = Opset });
        void Meta(string key, string value) => model.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });
        Meta(Checkpoint.VocabKey, JsonSerializer.Serialize(c.Vocabulary.Tokens));
        Meta(Checkpoint.TokenizerKey, Tokenizer.Name(c.Tokenizer));
        Meta(ModeKey, Checkpoint.ModeName(c.Mode));
        if (c.Metadata.TryGetValue(Checkpoint.ConfigKey, out string? json))
            Meta(Checkpoint.ConfigKey, json);
        if (config.IsClassifier)
            Meta(LabelsKey, JsonSerializer.Serialize(c.Labels));
        return model;
    }

    /// <summary>Token ids [dim, B] and lengths [B] as graph inputs; returns the ids and the lengths cast to ONNX's int32 <c>sequence_lens</c>.</summary>
    private static (string Ids, string Lengths) Sequences(OnnxGraph g, string ids, string lengths, string steps)
    {
        g.Input(ids, DataType.Int64, steps, "B");
        g.Input(lengths, DataType.Int64, "B");
        return (ids, g.Op("Cast", [lengths], null, OnnxGraph.Int("to", (long)DataType.Int32)));
    }

    /// <summary>The stack's input and output names for initializers: <c>rnn.</c> without a trailing dot is <c>rnn</c>.</summary>
    private static string Prefix(RnnStack stack) => stack.Layers[0].WeightIh.Name[..^"weight_ih_l0".Length];

    private static void LanguageModel(OnnxGraph g, ParameterLayout layout, Func<ParameterTensor, float[]> take)
    {
        int l = layout.L, h = layout.H;
        bool lstm = CellShapes.HasCellState(layout.Cell);
        var (ids, lengths) = Sequences(g, InputIds, Lengths, "T");
        string[] h0 = PerLayer(g, g.Input(InitialH, DataType.Float, l, "B", h), l);
        string[]? c0 = lstm ? PerLayer(g, g.Input(InitialC, DataType.Float, l, "B", h), l) : null;
        var stack = OnnxRecurrent.Add(g, layout.Stack, layout.V, h, take, Prefix(layout.Stack), ids, lengths, h0, c0);
        OutputHead(g, layout, take, OnnxRecurrent.Join(g, stack.Y, stack.Directions));
        States(g, stack, l, h);
    }

    private static void Classifier(OnnxGraph g, ParameterLayout layout, Func<ParameterTensor, float[]> take)
    {
        var (ids, lengths) = Sequences(g, InputIds, Lengths, "T");
        var stack = OnnxRecurrent.Add(g, layout.Stack, layout.V, layout.H, take, Prefix(layout.Stack), ids, lengths, h0: null, c0: null); // zero states, as the engine's
        // The top layer's last true state [B, H]; bidirectional [B, 2H]: [forward after the last token; reverse after the first].
        string last = OnnxRecurrent.JoinStates(g, stack.FinalH[^1], stack.Directions);
        string w = g.Floats(layout.DecoderWeight.Name, take(layout.DecoderWeight), layout.Outputs, stack.Directions * layout.H);
        string b = g.Floats(layout.DecoderBias.Name, take(layout.DecoderBias), layout.Outputs);
        g.Op("Gemm", [last, w, b], Logits, OnnxGraph.Int("transB", 1)); // last · Wᵀ + b
        g.Op("Softmax", [Logits], Probabilities, OnnxGraph.Int("axis", 1));
        g.Output(Logits, DataType.Float, "B", layout.Outputs);
        g.Output(Probabilities, DataType.Float, "B", layout.Outputs);
    }

    private static void EncoderDecoder(OnnxGraph g, ParameterLayout layout, Func<ParameterTensor, float[]> take)
    {
        var encoderStack = layout.Encoder ?? throw new InvalidOperationException("an encoder–decoder layout has an encoder");
        var (source, sourceLengths) = Sequences(g, SourceIds, SourceLengths, "S");
        var (ids, lengths) = Sequences(g, DecoderInputIds, DecoderLengths, "T");
        var encoder = OnnxRecurrent.Add(g, encoderStack, layout.V, layout.H, take, Prefix(encoderStack), source, sourceLengths, h0: null, c0: null);
        // Each decoder layer starts from the same encoder layer's state after the last true source token; a bidirectional
        // encoder's two directions (the reverse one after the first token) are summed, h and c alike (DESIGN.md §3d).
        string[] h0 = [.. encoder.FinalH.Select(s => OnnxRecurrent.SumStates(g, s, encoder.Directions))];
        string[]? c0 = encoder.FinalC.Length > 0 ? [.. encoder.FinalC.Select(s => OnnxRecurrent.SumStates(g, s, encoder.Directions))] : null;
        var attention = layout.Attention;
        // With attention, the memory: the encoder's top outputs, a bidirectional encoder's summed over the directions.
        string memory = attention is null ? "" : OnnxRecurrent.SumOutputs(g, encoder.Y, encoder.Directions);
        var bottom = attention?.Kind == AttentionKind.Additive // Bahdanau's context enters the first layer's steps
            ? OnnxAttention.AddAdditive(g, layout.Stack, attention, layout.V, layout.H, take, Prefix(layout.Stack), ids, DecoderLengths, h0[0], c0?[0],
                memory, SourceLengths, AttentionWeights)
            : null;
        var decoder = OnnxRecurrent.Add(g, layout.Stack, layout.V, layout.H, take, Prefix(layout.Stack), ids, lengths, h0, c0, bottom);
        string top = OnnxRecurrent.Join(g, decoder.Y, decoder.Directions);
        if (attention is { Kind: AttentionKind.Dot or AttentionKind.General }) // Luong's h̃ replaces the decoder's top outputs
            top = OnnxAttention.AddLuong(g, attention, layout.H, take, top, memory, SourceLengths, AttentionWeights);
        OutputHead(g, layout, take, top);
        States(g, decoder, layout.L, layout.H);
        if (attention is not null)
            g.Output(AttentionWeights, DataType.Float, "B", "T", "S");
    }

    /// <summary>[L, B, H] split into L values [1, B, H].</summary>
    private static string[] PerLayer(OnnxGraph g, string states, int layers) =>
        layers == 1 ? [states] : g.Node("Split", [states], new string?[layers], OnnxGraph.Int("axis", 0));

    /// <summary><c>logits</c> [T, B, V] = top · decoder.weightᵀ + decoder.bias.</summary>
    private static void OutputHead(OnnxGraph g, ParameterTensor weight, ParameterTensor bias, int outputs, int hidden, Func<ParameterTensor, float[]> take, string top)
    {
        string product = g.Op("MatMul", [top, g.TransposedFloats(weight.Name + "_transposed", take(weight), outputs, hidden)]); // weight [V, H]
        g.Op("Add", [product, g.Floats(bias.Name, take(bias), outputs)], Logits);
        g.Output(Logits, DataType.Float, "T", "B", outputs);
    }

    private static void OutputHead(OnnxGraph g, ParameterLayout layout, Func<ParameterTensor, float[]> take, string top) =>
        OutputHead(g, layout.DecoderWeight, layout.DecoderBias, layout.Outputs, layout.H, take, top);

    /// <summary><c>h_n</c> (and <c>c_n</c>) [L, B, H]: each layer's state after each sequence's last true step.</summary>
    private static void States(OnnxGraph g, OnnxStackValues stack, int layers, int hidden)
    {
        g.Op("Concat", stack.FinalH, FinalH, OnnxGraph.Int("axis", 0));
        g.Output(FinalH, DataType.Float, layers, "B", hidden);
        if (stack.FinalC.Length == 0)
            return;
        g.Op("Concat", stack.FinalC, FinalC, OnnxGraph.Int("axis", 0));
        g.Output(FinalC, DataType.Float, layers, "B", hidden);
    }
}
