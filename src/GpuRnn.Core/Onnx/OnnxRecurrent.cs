using GpuRnn.Kernels;

namespace GpuRnn;

/// <summary>The values a stack leaves in the graph: the top layer's outputs, and each layer's final states.</summary>
/// <param name="Y">The top layer's h at every step, [T, D, B, H] (zeros past a sequence's length, as ONNX Runtime writes
/// them); the reverse direction's at step t is its state after reading token t (it reads from the sequence's last true token back).</param>
/// <param name="FinalH">Per layer, h after each sequence's last true step, [D, B, H]: the forward direction's after the last
/// token, the reverse direction's after the first.</param>
/// <param name="FinalC">Per layer, an LSTM's c likewise, [D, B, H]; empty for other cells.</param>
/// <param name="Directions">D: 1, or 2 for a bidirectional stack (forward first).</param>
internal sealed record OnnxStackValues(string Y, string[] FinalH, string[] FinalC, int Directions);

/// <summary>
/// One recurrent stack (DESIGN.md §2) as ONNX's own <c>RNN</c> (tanh), <c>GRU</c> and <c>LSTM</c> operators, one node per
/// layer chained through its output <c>Y</c>. The operators' conventions differ from PyTorch's and are mapped here:
/// <list type="bullet">
/// <item>gate blocks: ONNX stacks a GRU's as z, r, h (PyTorch r, z, n) and an LSTM's as i, o, f, c (PyTorch i, f, g, o);
/// the rows of W_ih, W_hh and both biases are reordered block by block;</item>
/// <item>a GRU needs <c>linear_before_reset = 1</c>: PyTorch computes n = tanh(W_in x + b_in + r ⊙ (W_hn h' + b_hn)), with
/// the reset gate applied after the recurrent product, which is ONNX's "linear before reset" form;</item>
/// <item>both biases stay separate: ONNX's B is [Wb; Rb] = [b_ih; b_hh] (a GRU's b_hn must stay inside r ⊙ (…));</item>
/// <item>the one-hot input of layer 0 is a <c>Gather</c> of rows of a table by token id (W_ih · one-hot(x) is column x of
/// W_ih): with D directions of G = g·H gate rows, the table is the identity I_V with W_d = W_ih of direction d when
/// V ≤ D·G (the operator then multiplies by V columns), else [W_ih,0ᵀ | W_ih,1ᵀ] itself [V, D·G] with W_d the 0/1
/// matrix that picks direction d's G columns, so each token costs min(V, D·G)·G multiply-adds per direction and both
/// products are exact;</item>
/// <item>variable lengths are <c>sequence_lens</c>: ONNX Runtime stops each sequence at its length, so Y_h (and Y_c) is
/// the state after its last true step, which is what the engine's held state is (DESIGN.md §6); the reverse direction
/// reads each sequence from its own last true token back to the first, as the engine's does (DESIGN.md §3d).</item>
/// </list>
/// </summary>
internal static class OnnxRecurrent
{
    /// <summary>
    /// ONNX's direction of a layer of <paramref name="directions"/> directions. A bidirectional layer (DESIGN.md §3d) is
    /// <c>"bidirectional"</c>: W, R and B of the forward and the <c>_reverse</c> tensors stacked on axis 0
    /// (num_directions = 2), initial and final states [2, B, H], and Y [T, 2, B, H] transposed to [T, B, 2, H] and
    /// reshaped to [T, B, 2H] for the layer above (<see cref="Join"/>), which reads [forward; reverse] as the engine's does.
    /// </summary>
    private static string Direction(int directions) => directions switch
    {
        1 => "forward",
        2 => "bidirectional",
        _ => throw new ArgumentOutOfRangeException(nameof(directions), directions, "1 or 2 directions"),
    };

    /// <summary>
    /// Adds the layers of <paramref name="stack"/> (hidden size <paramref name="hidden"/>, one-hot input over
    /// <paramref name="vocab"/>, one or two directions) reading token ids <paramref name="ids"/> [T, B] with lengths
    /// <paramref name="lengths"/> (int32 [B]), from initial states <paramref name="h0"/> / <paramref name="c0"/> per layer
    /// [D, B, H] (null: zeros). <paramref name="weights"/> gives a tensor's values (and records that it was exported);
    /// <paramref name="name"/> prefixes the initializers. With <paramref name="bottom"/> (a forward stack whose first layer
    /// is already in the graph: Bahdanau's, <see cref="OnnxAttention.AddAdditive"/>), the layers above it read its Y.
    /// </summary>
    public static OnnxStackValues Add(OnnxGraph g, RnnStack stack, int vocab, int hidden, Func<ParameterTensor, float[]> weights,
        string name, string ids, string lengths, string[]? h0, string[]? c0, OnnxStackValues? bottom = null)
    {
        var cell = stack.Cell;
        int layers = stack.Layers.Count, directions = stack.Directions, rows = CellShapes.Gates(cell) * hidden; // G = g·H
        bool lstm = CellShapes.HasCellState(cell);
        var finalH = new string[layers];
        var finalC = new string[lstm ? layers : 0];
        string y = "";
        if (bottom is not null)
        {
            (y, finalH[0]) = (bottom.Y, bottom.FinalH[0]);
            if (lstm)
                finalC[0] = bottom.FinalC[0];
        }
        for (int k = bottom is null ? 0 : 1; k < layers; k++)
        {
            var blocks = Enumerable.Range(0, directions).Select(d => stack.Of(d)[k]).ToArray(); // forward, then reverse
            float[][] wIh = [.. blocks.Select(p => Reorder(cell, weights(p.WeightIh)))];
            string x;
            float[] w;
            int inputs;
            if (k == 0)
                (x, w, inputs) = OneHotInput(g, $"{name}l0.input_table", wIh, vocab, rows, ids);
            else
                (x, w, inputs) = (Join(g, y, directions), [.. wIh.SelectMany(m => m)], directions * hidden);
            float[] recurrent = [.. blocks.SelectMany(p => Reorder(cell, weights(p.WeightHh)))];
            float[] bias = [.. blocks.SelectMany(p => Reorder(cell, weights(p.BiasIh)).Concat(Reorder(cell, weights(p.BiasHh))))];
            string[] inputNames =
            [
                x,
                g.Floats($"{name}l{k}.W", w, directions, rows, inputs),
                g.Floats($"{name}l{k}.R", recurrent, directions, rows, hidden),
                g.Floats($"{name}l{k}.B", bias, directions, 2 * rows),
                lengths,
                h0?[k] ?? "",
                .. lstm ? [c0?[k] ?? ""] : Array.Empty<string>(),
            ];
            var outputs = Node(g, cell, hidden, directions, inputNames);
            y = outputs[0];
            finalH[k] = outputs[1];
            if (lstm)
                finalC[k] = outputs[2];
        }
        return new OnnxStackValues(y, finalH, finalC, directions);
    }

    /// <summary>Y [T, D, B, H] → [T, B, D·H], each step's directions side by side: [forward; reverse], as the layer above reads them.</summary>
    public static string Join(OnnxGraph g, string y, int directions) => directions == 1
        ? g.Op("Squeeze", [y, g.Axes(1)])
        : g.Op("Reshape", [g.Op("Transpose", [y], null, OnnxGraph.Ints("perm", 0, 2, 1, 3)), g.Shape(0, 0, -1)]);

    /// <summary>Final states [D, B, H] → [B, D·H]: [forward (after the last token); reverse (after the first)], as a bidirectional classifier reads them.</summary>
    public static string JoinStates(OnnxGraph g, string states, int directions) => directions == 1
        ? g.Op("Squeeze", [states, g.Axes(0)])
        : g.Op("Reshape", [g.Op("Transpose", [states], null, OnnxGraph.Ints("perm", 1, 0, 2)), g.Shape(0, -1)]);

    /// <summary>Final states [D, B, H] summed over the directions, [1, B, H]: how an encoder's layer starts the decoder's.</summary>
    public static string SumStates(OnnxGraph g, string states, int directions) =>
        directions == 1 ? states : g.Op("ReduceSum", [states, g.Axes(0)], null, OnnxGraph.Int("keepdims", 1));

    /// <summary>Y [T, D, B, H] summed over the directions, [T, B, H]: an encoder's memory for attention.</summary>
    public static string SumOutputs(OnnxGraph g, string y, int directions) =>
        directions == 1 ? g.Op("Squeeze", [y, g.Axes(1)]) : g.Op("ReduceSum", [y, g.Axes(1)], null, OnnxGraph.Int("keepdims", 0));

    /// <summary>
    /// Layer 0's input: a Gather of a table by token id, [T, B, inputs], and W [D, G, inputs] (see the class comment):
    /// the identity with the directions' W_ih when V ≤ D·G, else the directions' W_ihᵀ side by side with 0/1 selections.
    /// </summary>
    internal static (string X, float[] W, int Inputs) OneHotInput(OnnxGraph g, string table, float[][] wIh, int vocab, int rows, string ids)
    {
        int directions = wIh.Length;
        if (vocab <= directions * rows)
            return (g.Op("Gather", [g.Floats(table, Identity(vocab), vocab, vocab), ids]), [.. wIh.SelectMany(m => m)], vocab);
        int inputs = directions * rows;
        var t = new float[vocab * inputs]; // [V, D·G]: row v holds column v of each direction's W_ih
        var w = new float[directions * rows * inputs]; // [D, G, D·G]: direction d picks columns d·G … d·G + G − 1
        for (int d = 0; d < directions; d++)
        {
            for (int r = 0; r < rows; r++)
            {
                w[(d * rows + r) * inputs + d * rows + r] = 1;
                for (int v = 0; v < vocab; v++)
                    t[v * inputs + d * rows + r] = wIh[d][r * vocab + v];
            }
        }
        return (g.Op("Gather", [g.Floats(table, t, vocab, inputs), ids]), w, inputs);
    }

    /// <summary>A node of the cell's operator over <paramref name="inputs"/> (X, W, R, B, sequence_lens, initial_h[, initial_c]); returns Y, Y_h (and Y_c).</summary>
    internal static string[] Node(OnnxGraph g, CellKind cell, int hidden, int directions, string[] inputs) =>
        g.Node(OpType(cell), inputs, CellShapes.HasCellState(cell) ? [null, null, null] : [null, null], Attributes(cell, hidden, directions));

    private static string OpType(CellKind cell) => cell switch
    {
        CellKind.Elman => "RNN",
        CellKind.Gru => "GRU",
        CellKind.Lstm => "LSTM",
        _ => throw new ArgumentOutOfRangeException(nameof(cell), cell, "unknown cell"),
    };

    private static Onnx.AttributeProto[] Attributes(CellKind cell, int hidden, int directions) => cell switch
    {
        CellKind.Elman => [OnnxGraph.Int("hidden_size", hidden), OnnxGraph.Str("direction", Direction(directions))], // activations default to Tanh (both directions)
        CellKind.Gru => [OnnxGraph.Int("hidden_size", hidden), OnnxGraph.Str("direction", Direction(directions)), OnnxGraph.Int("linear_before_reset", 1)],
        CellKind.Lstm => [OnnxGraph.Int("hidden_size", hidden), OnnxGraph.Str("direction", Direction(directions))],
        _ => throw new ArgumentOutOfRangeException(nameof(cell), cell, "unknown cell"),
    };

    /// <summary>ONNX's gate block j is PyTorch's block <c>GateSource(cell)[j]</c>: GRU z, r, h ← r, z, n; LSTM i, o, f, c ← i, f, g, o.</summary>
    private static int[] GateSource(CellKind cell) => cell switch
    {
        CellKind.Elman => [0],
        CellKind.Gru => [1, 0, 2],
        CellKind.Lstm => [0, 3, 1, 2],
        _ => throw new ArgumentOutOfRangeException(nameof(cell), cell, "unknown cell"),
    };

    /// <summary>The rows of a [g·H, cols] tensor (or a [g·H] bias) in ONNX's gate order.</summary>
    internal static float[] Reorder(CellKind cell, float[] pytorch)
    {
        var source = GateSource(cell);
        int block = pytorch.Length / source.Length; // H·cols values per gate
        var onnx = new float[pytorch.Length];
        for (int j = 0; j < source.Length; j++)
            Array.Copy(pytorch, source[j] * block, onnx, j * block, block);
        return onnx;
    }

    private static float[] Identity(int n)
    {
        var m = new float[n * n];
        for (int i = 0; i < n; i++)
            m[i * n + i] = 1;
        return m;
    }
}
