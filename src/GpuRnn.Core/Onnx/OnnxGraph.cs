using System.Runtime.InteropServices;
using Google.Protobuf;
using Onnx;

namespace GpuRnn;

/// <summary>A dimension of a graph input or output: a fixed size, or a symbolic one (<c>"T"</c>, <c>"B"</c>) chosen by the caller at run time.</summary>
internal readonly record struct OnnxDim(long Size, string? Symbol)
{
    public static implicit operator OnnxDim(int size) => new(size, null);

    public static implicit operator OnnxDim(string symbol) => new(0, symbol);
}

/// <summary>
/// Builds one ONNX graph (<see cref="GraphProto"/> of the official schema, through OnnxSharp's generated classes):
/// typed inputs and outputs, initializers, and nodes with fresh value names. No operator logic lives here.
/// </summary>
internal sealed class OnnxGraph
{
    private readonly HashSet<string> cached = [];
    private readonly string prefix;
    private int next;

    /// <summary>
    /// A graph named <paramref name="name"/>; the names it makes up (node outputs, cached constants) start with
    /// <paramref name="prefix"/>, so a subgraph (a <c>Scan</c> body) never shadows a name of the graph around it.
    /// </summary>
    public OnnxGraph(string name, string prefix = "")
    {
        Proto = new GraphProto { Name = name };
        this.prefix = prefix;
    }

    /// <summary>The graph built so far.</summary>
    public GraphProto Proto { get; }

    /// <summary>Declares a graph input; returns its name.</summary>
    public string Input(string name, TensorProto.Types.DataType type, params OnnxDim[] dims)
    {
        Proto.Input.Add(ValueInfo(name, type, dims));
        return name;
    }

    /// <summary>Declares <paramref name="value"/> a graph output of that type and shape.</summary>
    public void Output(string value, TensorProto.Types.DataType type, params OnnxDim[] dims) => Proto.Output.Add(ValueInfo(value, type, dims));

    /// <summary>A float initializer (row-major) of shape <paramref name="dims"/>; returns its name.</summary>
    public string Floats(string name, float[] data, params long[] dims)
    {
        if (data.Length != dims.Aggregate(1L, (a, d) => a * d))
            throw new InvalidOperationException($"initializer {name}: {data.Length} values for shape [{string.Join(", ", dims)}]");
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float, RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(data.AsSpan())) };
        t.Dims.AddRange(dims);
        Proto.Initializer.Add(t);
        return name;
    }

    /// <summary>The transpose [cols, rows] of the row-major <paramref name="data"/> [rows, cols] as a float initializer (a weight for <c>x·Wᵀ</c> by <c>MatMul</c>); returns its name.</summary>
    public string TransposedFloats(string name, float[] data, int rows, int cols)
    {
        var t = new float[data.Length];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                t[c * rows + r] = data[r * cols + c];
        return Floats(name, t, cols, rows);
    }

    /// <summary>The 1-D int64 initializer of the axes that Squeeze, Unsqueeze and ReduceSum read (one per list and graph).</summary>
    public string Axes(params long[] axes) => Cached($"{prefix}axes_{string.Join("_", axes)}", name => LongsProto(name, axes));

    /// <summary>The 1-D int64 initializer of a Reshape's target shape (0 keeps that input dimension, −1 is inferred; one per shape and graph).</summary>
    public string Shape(params long[] dims) => Cached($"{prefix}shape_{string.Join("_", dims).Replace('-', 'm')}", name => LongsProto(name, dims));

    /// <summary>The 0-D (scalar) int64 initializer of <paramref name="value"/>, as <c>Range</c> reads its start and delta (one per value and graph).</summary>
    public string Scalar(long value) => Cached($"{prefix}long_{value}", name =>
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Int64 };
        t.Int64Data.Add(value);
        return t;
    });

    /// <summary>The 0-D (scalar) float initializer of <paramref name="value"/>, a fill value that broadcasts (one per value and graph).</summary>
    public string Scalar(float value) => Cached($"{prefix}float_{BitConverter.SingleToInt32Bits(value):x8}", name =>
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
        t.FloatData.Add(value);
        return t;
    });

    /// <summary>The initializer <paramref name="name"/>, made by <paramref name="make"/> the first time it is asked for.</summary>
    private string Cached(string name, Func<string, TensorProto> make)
    {
        if (cached.Add(name))
            Proto.Initializer.Add(make(name));
        return name;
    }

    private static TensorProto LongsProto(string name, long[] data)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Int64 };
        t.Dims.Add(data.Length);
        t.Int64Data.AddRange(data);
        return t;
    }

    /// <summary>
    /// A node of <paramref name="op"/> (default domain) reading <paramref name="inputs"/> ("" for an omitted optional
    /// input) and writing <paramref name="outputs"/> values: a name given there is kept (a graph output), null gets a
    /// fresh name. Returns the output names.
    /// </summary>
    public string[] Node(string op, string[] inputs, string?[] outputs, params AttributeProto[] attributes)
    {
        var node = new NodeProto { OpType = op, Name = $"{prefix}{op}_{next}" };
        node.Input.AddRange(inputs);
        var names = new string[outputs.Length];
        for (int i = 0; i < outputs.Length; i++)
            names[i] = outputs[i] ?? $"{prefix}{op.ToLowerInvariant()}_{next}_{i}";
        node.Output.AddRange(names);
        node.Attribute.AddRange(attributes);
        Proto.Node.Add(node);
        next++;
        return names;
    }

    /// <summary>A node with one output (a fresh name unless <paramref name="output"/> is given); returns its name.</summary>
    public string Op(string op, string[] inputs, string? output = null, params AttributeProto[] attributes) => Node(op, inputs, [output], attributes)[0];

    /// <summary>An integer attribute.</summary>
    public static AttributeProto Int(string name, long value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    /// <summary>An attribute of a list of integers (a Transpose's <c>perm</c>).</summary>
    public static AttributeProto Ints(string name, params long[] values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(values);
        return a;
    }

    /// <summary>A graph attribute (a <c>Scan</c>'s body).</summary>
    public static AttributeProto Graph(string name, OnnxGraph body) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Graph, G = body.Proto };

    /// <summary>A string attribute.</summary>
    public static AttributeProto Str(string name, string value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(value) };

    private static ValueInfoProto ValueInfo(string name, TensorProto.Types.DataType type, OnnxDim[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims)
            shape.Dim.Add(d.Symbol is null ? new TensorShapeProto.Types.Dimension { DimValue = d.Size } : new TensorShapeProto.Types.Dimension { DimParam = d.Symbol });
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } } };
    }
}
