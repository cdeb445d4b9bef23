namespace GpuRnn;

/// <summary>One named tensor inside the flat parameter buffer.</summary>
public sealed record ParameterTensor(string Name, int[] Shape, long Offset)
{
    /// <summary>Number of elements.</summary>
    public long Length => Shape.Aggregate(1L, (a, d) => a * d);
}

/// <summary>The four tensors of each layer of one stack of Elman layers, by layer.</summary>
public sealed record RnnStack(IReadOnlyList<ParameterTensor> WeightIh, IReadOnlyList<ParameterTensor> WeightHh,
    IReadOnlyList<ParameterTensor> BiasIh, IReadOnlyList<ParameterTensor> BiasHh);

/// <summary>
/// Where every tensor of an L-layer Elman language model lives in the one flat parameter buffer
/// (DESIGN.md §2), with PyTorch's <c>state_dict</c> names: per layer k <c>rnn.weight_ih_l{k}</c>,
/// <c>rnn.weight_hh_l{k}</c>, <c>rnn.bias_ih_l{k}</c>, <c>rnn.bias_hh_l{k}</c>, then
/// <c>decoder.weight</c> and <c>decoder.bias</c> (over the vocabulary for a language model, over the
/// classes for a classifier). An encoder–decoder has two stacks, <c>encoder.rnn.*</c> and
/// <c>decoder.rnn.*</c>, and <c>decoder.out.weight</c>/<c>decoder.out.bias</c>. Gradients and
/// optimizer slots use the same offsets.
/// </summary>
public sealed class ParameterLayout
{
    private readonly Dictionary<string, ParameterTensor> byName;

    /// <summary>
    /// The layout of a model with vocabulary V, hidden size H, L layers and a decoder of
    /// <paramref name="outputs"/> rows (V when 0); with <paramref name="encoderDecoder"/>, an encoder
    /// stack of the same sizes comes first.
    /// </summary>
    public ParameterLayout(int vocab, int hidden, int layers, int outputs = 0, bool encoderDecoder = false)
    {
        if (outputs == 0)
            outputs = vocab;
        if (vocab < 1)
            throw new GpuRnnException($"vocabulary size must be at least 1 (got {vocab})");
        if (hidden < 1)
            throw new GpuRnnException($"--hidden must be at least 1 (got {hidden})");
        if (layers < 1)
            throw new GpuRnnException($"--layers must be at least 1 (got {layers})");
        V = vocab;
        H = hidden;
        L = layers;
        var list = new List<ParameterTensor>();
        long offset = 0;
        void Add(string name, params int[] shape)
        {
            var t = new ParameterTensor(name, shape, offset);
            list.Add(t);
            offset += t.Length;
        }
        RnnStack AddStack(string prefix)
        {
            int first = list.Count;
            for (int k = 0; k < layers; k++)
            {
                Add($"{prefix}weight_ih_l{k}", hidden, k == 0 ? vocab : hidden);
                Add($"{prefix}weight_hh_l{k}", hidden, hidden);
                Add($"{prefix}bias_ih_l{k}", hidden);
                Add($"{prefix}bias_hh_l{k}", hidden);
            }
            ParameterTensor[] Pick(int j) => Enumerable.Range(0, layers).Select(k => list[first + 4 * k + j]).ToArray();
            return new RnnStack(Pick(0), Pick(1), Pick(2), Pick(3));
        }
        if (outputs < 1)
            throw new GpuRnnException($"the decoder needs at least 1 output (got {outputs})");
        Outputs = outputs;
        IsEncoderDecoder = encoderDecoder;
        Encoder = encoderDecoder ? AddStack("encoder.rnn.") : null;
        Stack = AddStack(encoderDecoder ? "decoder.rnn." : "rnn.");
        string head = encoderDecoder ? "decoder.out." : "decoder.";
        Add(head + "weight", outputs, hidden);
        Add(head + "bias", outputs);
        Tensors = list;
        WeightIh = Stack.WeightIh;
        WeightHh = Stack.WeightHh;
        BiasIh = Stack.BiasIh;
        BiasHh = Stack.BiasHh;
        DecoderWeight = list[^2];
        DecoderBias = list[^1];
        Count = offset;
        if (Count > int.MaxValue)
            throw new GpuRnnException($"the model has {Count} parameters; at most {int.MaxValue} are supported");
        byName = list.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    /// <summary>Vocabulary size.</summary>
    public int V { get; }

    /// <summary>Decoder rows: V for a language model, C for a classifier.</summary>
    public int Outputs { get; }

    /// <summary>Hidden size.</summary>
    public int H { get; }

    /// <summary>Number of layers.</summary>
    public int L { get; }

    /// <summary>Every tensor in buffer order.</summary>
    public IReadOnlyList<ParameterTensor> Tensors { get; }

    /// <summary>True for an encoder–decoder (two stacks).</summary>
    public bool IsEncoderDecoder { get; }

    /// <summary>The encoder stack of an encoder–decoder; null otherwise.</summary>
    public RnnStack? Encoder { get; }

    /// <summary>The stack that feeds the output layer: <c>rnn.*</c>, or <c>decoder.rnn.*</c> of an encoder–decoder.</summary>
    public RnnStack Stack { get; }

    /// <summary><c>rnn.weight_ih_l{k}</c> by layer (looked up once, so the training step builds no names).</summary>
    public IReadOnlyList<ParameterTensor> WeightIh { get; }

    /// <summary><c>rnn.weight_hh_l{k}</c> by layer.</summary>
    public IReadOnlyList<ParameterTensor> WeightHh { get; }

    /// <summary><c>rnn.bias_ih_l{k}</c> by layer.</summary>
    public IReadOnlyList<ParameterTensor> BiasIh { get; }

    /// <summary><c>rnn.bias_hh_l{k}</c> by layer.</summary>
    public IReadOnlyList<ParameterTensor> BiasHh { get; }

    /// <summary><c>decoder.weight</c>.</summary>
    public ParameterTensor DecoderWeight { get; }

    /// <summary><c>decoder.bias</c>.</summary>
    public ParameterTensor DecoderBias { get; }

    /// <summary>Total number of parameters.</summary>
    public long Count { get; }

    /// <summary>The tensor of a name.</summary>
    /// <exception cref="KeyNotFoundException">No tensor has that name.</exception>
    public ParameterTensor this[string name] =>
        byName.TryGetValue(name, out var t) ? t : throw new KeyNotFoundException($"no parameter named '{name}'");
}
