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
    private readonly Dictionary<long, string> axes = [];
    private readonly Dictionary<string, string> shapes = [];
    private int next;

    public OnnxGraph(string name) => Proto = new GraphProto { Name = name };

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

    /// <summary>A 1-D int64 initializer (axes, shapes); returns its name.</summary>
    public string Longs(string name, params long[] data)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Int64 };
        t.Dims.Add(data.Length);
        t.Int64Data.AddRange(data);
        Proto.Initializer.Add(t);
        return name;
    }

    /// <summary>A 0-D (scalar) initializer of one int64, as <c>Range</c> reads its start, limit and delta; returns its name.</summary>
    public string Long(string name, long value)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Int64 };
        t.Int64Data.Add(value);
        Proto.Initializer.Add(t);
        return name;
    }

    /// <summary>A 0-D (scalar) float initializer (a fill value that broadcasts); returns its name.</summary>
    public string Float(string name, float value)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
        t.FloatData.Add(value);
        Proto.Initializer.Add(t);
        return name;
    }

    /// <summary>The 1-D int64 initializer <c>[axis]</c> that Squeeze and Unsqueeze read (one per axis and graph).</summary>
    public string Axes(long axis)
    {
        if (!axes.TryGetValue(axis, out string? name))
            axes[axis] = name = Longs($"axes_{axis}", axis);
        return name;
    }

    /// <summary>The 1-D int64 initializer of a Reshape's target shape (0 keeps that input dimension, −1 is inferred; one per shape and graph).</summary>
    public string Shape(params long[] dims)
    {
        string key = string.Join(",", dims);
        if (!shapes.TryGetValue(key, out string? name))
            shapes[key] = name = Longs($"shape_{key.Replace(',', '_').Replace('-', 'm')}", dims);
        return name;
    }

    /// <summary>
    /// A node of <paramref name="op"/> (default domain) reading <paramref name="inputs"/> ("" for an omitted optional
    /// input) and writing <paramref name="outputs"/> values: a name given there is kept (a graph output), null gets a
    /// fresh name. Returns the output names.
    /// </summary>
    public string[] Node(string op, string[] inputs, string?[] outputs, params AttributeProto[] attributes)
    {
        var node = new NodeProto { OpType = op, Name = $"{op}_{next}" };
        node.Input.AddRange(inputs);
        var names = new string[outputs.Length];
        for (int i = 0; i < outputs.Length; i++)
            names[i] = outputs[i] ?? $"{op.ToLowerInvariant()}_{next}_{i}";
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
