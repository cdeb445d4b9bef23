using GpuRnn.Kernels;

namespace GpuRnn;

/// <summary>One named tensor inside the flat parameter buffer.</summary>
public sealed record ParameterTensor(string Name, int[] Shape, long Offset)
{
    /// <summary>Number of elements.</summary>
    public long Length => Shape.Aggregate(1L, (a, d) => a * d);
}

/// <summary>
/// The parameter block of one layer of a cell (DESIGN.md §2): <c>weight_ih_l{k}</c> [G, V] (layer 0,
/// one-hot input) or [G, H], <c>weight_hh_l{k}</c> [G, H], <c>bias_ih_l{k}</c> and <c>bias_hh_l{k}</c>
/// [G], where G = g·H stacks the gates in PyTorch's row order (GRU r, z, n; LSTM i, f, g, o).
/// </summary>
public sealed record CellParameters(ParameterTensor WeightIh, ParameterTensor WeightHh, ParameterTensor BiasIh, ParameterTensor BiasHh);

/// <summary>
/// An encoder–decoder's attention (README "Attention"). Luong: <c>attention.weight</c> W_a [H, H] (general; null for
/// dot) and <c>attention.combine.weight</c> W_c [H, 2H], which makes the attentional state h̃ = tanh(W_c [c; h])
/// from the context c (its first H columns) and the decoder's top-layer output h (its last H). Bahdanau additive:
/// <c>attention.query.weight</c> W_q [H, H], <c>attention.key.weight</c> W_k [H, H], <c>attention.score.weight</c> v [1, H]
/// and <c>attention.context.weight</c> W_ctx [G, H] (G = the decoder cell's gates × H), which adds W_ctx c to the input
/// term of the decoder's first layer.
/// </summary>
public sealed record AttentionParameters(AttentionKind Kind, ParameterTensor? Weight, ParameterTensor? Combine,
    ParameterTensor? Query = null, ParameterTensor? Key = null, ParameterTensor? Score = null, ParameterTensor? Context = null)
{
    /// <summary>The kind's tensors in layout order.</summary>
    public IEnumerable<ParameterTensor> Tensors => new[] { Weight, Combine, Query, Key, Score, Context }.OfType<ParameterTensor>();
}

/// <summary>
/// The parameter blocks of one stack of L layers of one cell, by layer; a bidirectional stack also has the reverse
/// direction's blocks (<c>*_l{k}_reverse</c>), by layer, in <paramref name="Reverse"/> (empty otherwise).
/// </summary>
public sealed record RnnStack(CellKind Cell, IReadOnlyList<CellParameters> Layers, IReadOnlyList<CellParameters> Reverse)
{
    /// <summary>1, or 2 for a bidirectional stack.</summary>
    public int Directions => Reverse.Count == 0 ? 1 : 2;

    /// <summary>The blocks of direction <paramref name="direction"/> (0 forward, 1 reverse), by layer.</summary>
    public IReadOnlyList<CellParameters> Of(int direction) => direction == 0 ? Layers : Reverse;
}

/// <summary>
/// Where every tensor of an L-layer model lives in the one flat parameter buffer (DESIGN.md §2), with
/// PyTorch's <c>state_dict</c> names: per layer k <c>rnn.weight_ih_l{k}</c>, <c>rnn.weight_hh_l{k}</c>,
/// <c>rnn.bias_ih_l{k}</c>, <c>rnn.bias_hh_l{k}</c> (shaped by the cell's gates, as <c>nn.RNN</c>,
/// <c>nn.GRU</c> or <c>nn.LSTM</c> has them), then <c>decoder.weight</c> and <c>decoder.bias</c> (over
/// the vocabulary for a language model, over the classes for a classifier). An encoder–decoder has two
/// stacks, <c>encoder.rnn.*</c> and <c>decoder.rnn.*</c>, and <c>decoder.out.weight</c>/<c>decoder.out.bias</c>.
/// A bidirectional stack (a classifier's, an encoder's) follows each layer's block with its reverse direction's,
/// <c>*_l{k}_reverse</c> of the same shapes, and every layer above the first reads 2H inputs, as PyTorch lays them out;
/// a bidirectional classifier's decoder reads [forward; reverse] final states, [C, 2H]. With attention, <c>attention.*</c> (<see cref="AttentionParameters"/>) lie between the decoder stack and <c>decoder.out</c>.
/// Gradients and optimizer slots use the same offsets.
/// </summary>
public sealed class ParameterLayout
{
    private readonly Dictionary<string, ParameterTensor> byName;

    /// <summary>
    /// The layout of a model with vocabulary V, hidden size H, L layers of <paramref name="cell"/> and a
    /// decoder of <paramref name="outputs"/> rows (V when 0); with <paramref name="encoderDecoder"/>, an
    /// encoder stack of the same sizes comes first.
    /// </summary>
    /// <exception cref="GpuRnnException">A size is not positive, or the model has more than 2³¹ − 1 parameters.</exception>
    public ParameterLayout(int vocab, int hidden, int layers, int outputs = 0, bool encoderDecoder = false, CellKind cell = CellKind.Elman)
        : this(new ModelConfig(vocab, hidden, layers, outputs == 0 ? 0 : outputs, encoderDecoder, cell), outputs == 0 ? vocab : outputs)
    {
    }

    /// <summary>The layout of <paramref name="config"/>.</summary>
    /// <exception cref="GpuRnnException">A size is not positive, or the model has more than 2³¹ − 1 parameters.</exception>
    public ParameterLayout(ModelConfig config) : this(config, config.Outputs)
    {
    }

    private ParameterLayout(ModelConfig config, int outputs)
    {
        var list = Build(config, outputs, out var encoder, out var stack, out var attention);
        V = config.Vocab;
        H = config.Hidden;
        L = config.Layers;
        Cell = config.Cell;
        Outputs = outputs;
        IsEncoderDecoder = config.EncoderDecoder;
        IsBidirectional = config.Bidirectional;
        Encoder = encoder;
        Stack = stack;
        Attention = attention;
        Tensors = list;
        DecoderWeight = list[^2];
        DecoderBias = list[^1];
        Count = list[^1].Offset + list[^1].Length;
        if (Count > int.MaxValue)
            throw new GpuRnnException($"the model has {Count} parameters; at most {int.MaxValue} are supported");
        byName = list.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    /// <summary>Parameters of <paramref name="config"/>, counted without the size limit (for the memory estimate of sizes that cannot be built).</summary>
    internal static long CountOf(ModelConfig config)
    {
        var list = Build(config, config.Outputs, out _, out _, out _);
        return list[^1].Offset + list[^1].Length;
    }

    private static List<ParameterTensor> Build(ModelConfig config, int outputs, out RnnStack? encoder, out RnnStack stack, out AttentionParameters? attention)
    {
        int vocab = config.Vocab, hidden = config.Hidden, layers = config.Layers;
        if (vocab < 1)
            throw new GpuRnnException($"vocabulary size must be at least 1 (got {vocab})");
        if (hidden < 1)
            throw new GpuRnnException($"the hidden size must be at least 1 (got {hidden})");
        if (layers < 1)
            throw new GpuRnnException($"the layer count must be at least 1 (got {layers})");
        if (outputs < 1)
            throw new GpuRnnException($"the decoder needs at least 1 output (got {outputs})");
        if (config.Bidirectional && !config.IsClassifier && !config.EncoderDecoder)
            throw new GpuRnnException("a language model cannot be bidirectional: its reverse direction would read the tokens it predicts");
        if (config.Attention != AttentionKind.None && !config.EncoderDecoder)
            throw new GpuRnnException($"attention ({AttentionNames.Name(config.Attention)}) needs an encoder–decoder (pairs mode)");
        int rows = CellShapes.Gates(config.Cell) * hidden; // G = g·H
        var list = new List<ParameterTensor>();
        long offset = 0;
        ParameterTensor Add(string name, params int[] shape)
        {
            var t = new ParameterTensor(name, shape, offset);
            list.Add(t);
            offset += t.Length;
            return t;
        }
        RnnStack AddStack(string prefix, int directions)
        {
            var blocks = new CellParameters[layers];
            var reverse = new CellParameters[directions == 2 ? layers : 0];
            CellParameters Block(int k, string suffix) => new(
                Add($"{prefix}weight_ih_l{k}{suffix}", rows, k == 0 ? vocab : directions * hidden),
                Add($"{prefix}weight_hh_l{k}{suffix}", rows, hidden),
                Add($"{prefix}bias_ih_l{k}{suffix}", rows),
                Add($"{prefix}bias_hh_l{k}{suffix}", rows));
            for (int k = 0; k < layers; k++)
            {
                blocks[k] = Block(k, "");
                if (reverse.Length > 0)
                    reverse[k] = Block(k, "_reverse");
            }
            return new RnnStack(config.Cell, blocks, reverse);
        }
        // The bidirectional stack is the classifier's or the encoder's; a decoder runs forward only.
        encoder = config.EncoderDecoder ? AddStack("encoder.rnn.", config.Directions) : null;
        stack = AddStack(config.EncoderDecoder ? "decoder.rnn." : "rnn.", config.EncoderDecoder ? 1 : config.Directions);
        attention = config.Attention switch
        {
            AttentionKind.None => null,
            AttentionKind.Dot => new AttentionParameters(AttentionKind.Dot, null, Add("attention.combine.weight", hidden, 2 * hidden)),
            AttentionKind.General => new AttentionParameters(AttentionKind.General, Add("attention.weight", hidden, hidden), Add("attention.combine.weight", hidden, 2 * hidden)),
            AttentionKind.Additive => new AttentionParameters(AttentionKind.Additive, null, null, Query: Add("attention.query.weight", hidden, hidden),
                Key: Add("attention.key.weight", hidden, hidden), Score: Add("attention.score.weight", 1, hidden), Context: Add("attention.context.weight", rows, hidden)),
            _ => throw new ArgumentOutOfRangeException(nameof(config), config.Attention, "unknown attention"),
        };
        string head = config.EncoderDecoder ? "decoder.out." : "decoder.";
        Add(head + "weight", outputs, config.EncoderDecoder ? hidden : config.Directions * hidden);
        Add(head + "bias", outputs);
        return list;
    }

    /// <summary>Vocabulary size.</summary>
    public int V { get; }

    /// <summary>Decoder rows: V for a language model, C for a classifier.</summary>
    public int Outputs { get; }

    /// <summary>Hidden size.</summary>
    public int H { get; }

    /// <summary>Number of layers.</summary>
    public int L { get; }

    /// <summary>The cell of every layer.</summary>
    public CellKind Cell { get; }

    /// <summary>Every tensor in buffer order.</summary>
    public IReadOnlyList<ParameterTensor> Tensors { get; }

    /// <summary>True for an encoder–decoder (two stacks).</summary>
    public bool IsEncoderDecoder { get; }

    /// <summary>True when the classifier's stack or the encoder reads both directions (<c>*_reverse</c> tensors).</summary>
    public bool IsBidirectional { get; }

    /// <summary>The encoder stack of an encoder–decoder; null otherwise.</summary>
    public RnnStack? Encoder { get; }

    /// <summary>The stack that feeds the output layer: <c>rnn.*</c>, or <c>decoder.rnn.*</c> of an encoder–decoder.</summary>
    public RnnStack Stack { get; }

    /// <summary>An encoder–decoder's attention parameters; null without attention.</summary>
    public AttentionParameters? Attention { get; }

    /// <summary><c>decoder.weight</c> (<c>decoder.out.weight</c> of an encoder–decoder).</summary>
    public ParameterTensor DecoderWeight { get; }

    /// <summary><c>decoder.bias</c> (<c>decoder.out.bias</c> of an encoder–decoder).</summary>
    public ParameterTensor DecoderBias { get; }

    /// <summary>Total number of parameters.</summary>
    public long Count { get; }

    /// <summary>The tensor of a name.</summary>
    /// <exception cref="KeyNotFoundException">No tensor has that name.</exception>
    public ParameterTensor this[string name] =>
        byName.TryGetValue(name, out var t) ? t : throw new KeyNotFoundException($"no parameter named '{name}'");
}
