using GpuRnn.Kernels;

namespace GpuRnn.Tests.Reference;

/// <summary>
/// Double-precision copy of a character/word RNN language model: PyTorch's
/// <c>nn.RNN(input_size=V, hidden_size=H, num_layers=L, nonlinearity='tanh')</c> (or <c>nn.GRU</c>,
/// <c>nn.LSTM</c> of the same sizes, by <see cref="Cell"/>) followed by <c>nn.Linear(H, V)</c>.
/// Parameters are kept by their <c>state_dict</c> names, row-major, gate rows in PyTorch's order.
/// Written from the equations only; it shares no code with the GpuRnn library on purpose,
/// so that a bug in the library cannot hide by being copied into its own reference.
/// </summary>
public sealed class RefModel
{
    /// <summary>Builds a model with every parameter zero.</summary>
    public RefModel(int vocab, int hidden, int layers, CellKind cell = CellKind.Elman)
    {
        if (vocab < 1) throw new ArgumentOutOfRangeException(nameof(vocab));
        if (hidden < 1) throw new ArgumentOutOfRangeException(nameof(hidden));
        if (layers < 1) throw new ArgumentOutOfRangeException(nameof(layers));
        V = vocab;
        H = hidden;
        L = layers;
        Cell = cell;
        Params = new Dictionary<string, double[]>();
        foreach (var (name, shape) in Layout(vocab, hidden, layers, cell))
        {
            Params[name] = new double[Count(shape)];
        }
    }

    /// <summary>Vocabulary size (input one-hot width and output classes).</summary>
    public int V { get; }

    /// <summary>Hidden units per layer.</summary>
    public int H { get; }

    /// <summary>Number of stacked RNN layers.</summary>
    public int L { get; }

    /// <summary>The recurrent cell of every layer.</summary>
    public CellKind Cell { get; }

    /// <summary>Every parameter by its PyTorch <c>state_dict</c> name, row-major.</summary>
    public Dictionary<string, double[]> Params { get; }

    /// <summary>
    /// Names and shapes in PyTorch's <c>state_dict</c> order: per layer k weight_ih, weight_hh,
    /// bias_ih, bias_hh (g·H rows: g = 1, 3, 4 gates); then decoder.weight, decoder.bias.
    /// </summary>
    public static IReadOnlyList<(string Name, int[] Shape)> Layout(int vocab, int hidden, int layers, CellKind cell = CellKind.Elman)
    {
        var list = new List<(string, int[])>(StackLayout("rnn.", vocab, hidden, layers, cell));
        list.Add(("decoder.weight", new[] { vocab, hidden }));
        list.Add(("decoder.bias", new[] { vocab }));
        return list;
    }

    /// <summary>The tensors of one stack of L layers of a cell, names starting with <paramref name="prefix"/>.</summary>
    public static IEnumerable<(string Name, int[] Shape)> StackLayout(string prefix, int vocab, int hidden, int layers, CellKind cell, bool bidirectional = false)
    {
        int rows = (int)cell * hidden;
        for (int k = 0; k < layers; k++)
        {
            // Layer 0 reads the one-hot token (width V); higher layers read the layer below (width H, or 2H: both directions).
            int inWidth = k == 0 ? vocab : bidirectional ? 2 * hidden : hidden;
            foreach (string suffix in bidirectional ? new[] { "", "_reverse" } : [""])
            {
                yield return ($"{prefix}weight_ih_l{k}{suffix}", new[] { rows, inWidth });
                yield return ($"{prefix}weight_hh_l{k}{suffix}", new[] { rows, hidden });
                yield return ($"{prefix}bias_ih_l{k}{suffix}", new[] { rows });
                yield return ($"{prefix}bias_hh_l{k}{suffix}", new[] { rows });
            }
        }
    }

    /// <summary>Widens single-precision parameters (e.g. read back from the device) to a reference model.</summary>
    public static RefModel FromFloats(int vocab, int hidden, int layers, IReadOnlyDictionary<string, float[]> p, CellKind cell = CellKind.Elman)
    {
        ArgumentNullException.ThrowIfNull(p);
        var m = new RefModel(vocab, hidden, layers, cell);
        foreach (var (name, shape) in Layout(vocab, hidden, layers, cell))
        {
            if (!p.TryGetValue(name, out var src))
                throw new ArgumentException($"missing parameter '{name}'", nameof(p));
            int n = Count(shape);
            if (src.Length != n)
                throw new ArgumentException($"parameter '{name}' has {src.Length} elements, expected {n}", nameof(p));
            var dst = m.Params[name];
            for (int i = 0; i < n; i++) dst[i] = src[i];
        }
        return m;
    }

    /// <summary>Deep copy: the clone's arrays are independent of this model's.</summary>
    public RefModel Clone()
    {
        var c = new RefModel(V, H, L, Cell);
        foreach (var (name, values) in Params)
        {
            c.Params[name] = (double[])values.Clone();
        }
        return c;
    }

    internal static int Count(int[] shape)
    {
        int n = 1;
        foreach (int d in shape) n *= d;
        return n;
    }
}
