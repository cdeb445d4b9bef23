using GpuRnn.Kernels;

namespace GpuRnn;

/// <summary>The values a stack leaves in the graph: the top layer's outputs, and each layer's final states.</summary>
/// <param name="Top">The top layer's h at every step, [T, B, H] (zeros past a sequence's length, as ONNX Runtime writes them).</param>
/// <param name="FinalH">Per layer, h after each sequence's last true step, [1, B, H].</param>
/// <param name="FinalC">Per layer, an LSTM's c after the last true step, [1, B, H]; empty for other cells.</param>
internal sealed record OnnxStackValues(string Top, string[] FinalH, string[] FinalC);

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
/// W_ih): the table is the identity I_V with W = W_ih when V ≤ G = g·H (the operator then multiplies by V columns), else
/// W_ihᵀ itself with W = I_G (G columns), so each token costs min(V, G)·G multiply-adds and both products are exact;</item>
/// <item>variable lengths are <c>sequence_lens</c>: ONNX Runtime stops each sequence at its length, so Y_h (and Y_c) is
/// the state after its last true step, which is what the engine's held state is (DESIGN.md §6).</item>
/// </list>
/// </summary>
internal static class OnnxRecurrent
{
    /// <summary>
    /// ONNX's direction of every layer. A bidirectional layer becomes <c>"bidirectional"</c>: W, R and B of the forward and
    /// the <c>_reverse</c> tensors stacked on axis 0 (num_directions = 2), initial and final states [2, B, H], and Y
    /// [T, 2, B, H] transposed to [T, B, 2, H] and reshaped to [T, B, 2H] for the layer above.
    /// </summary>
    private const string Direction = "forward";

    /// <summary>
    /// Adds the layers of <paramref name="stack"/> (hidden size <paramref name="hidden"/>, one-hot input over
    /// <paramref name="vocab"/>) reading token ids <paramref name="ids"/> [T, B] with lengths <paramref name="lengths"/>
    /// (int32 [B]), from initial states <paramref name="h0"/> / <paramref name="c0"/> per layer [1, B, H] (null: zeros).
    /// <paramref name="weights"/> gives a tensor's values (and records that it was exported); <paramref name="name"/> prefixes the initializers.
    /// </summary>
    public static OnnxStackValues Add(OnnxGraph g, RnnStack stack, int vocab, int hidden, Func<ParameterTensor, float[]> weights,
        string name, string ids, string lengths, string[]? h0, string[]? c0)
    {
        var cell = stack.Cell;
        int layers = stack.Layers.Count, rows = CellShapes.Gates(cell) * hidden; // G = g·H
        bool lstm = CellShapes.HasCellState(cell);
        var finalH = new string[layers];
        var finalC = new string[lstm ? layers : 0];
        string y = "";
        for (int k = 0; k < layers; k++)
        {
            var p = stack.Layers[k];
            float[] wIh = Reorder(cell, weights(p.WeightIh));
            string x;
            float[] w;
            int inputs;
            if (k == 0)
            {
                float[] table;
                if (vocab <= rows)
                    (table, w, inputs) = (Identity(vocab), wIh, vocab);
                else
                    (table, w, inputs) = (Transpose(wIh, rows, vocab), Identity(rows), rows);
                x = g.Op("Gather", [g.Floats($"{name}l0.input_table", table, vocab, inputs), ids]); // [T, B, inputs]
            }
            else
            {
                (w, inputs) = (wIh, hidden);
                x = g.Op("Squeeze", [y, g.Axes(1)]); // Y [T, 1, B, H] → [T, B, H]
            }
            float[] bias = [.. Reorder(cell, weights(p.BiasIh)), .. Reorder(cell, weights(p.BiasHh))];
            string[] inputNames =
            [
                x,
                g.Floats($"{name}l{k}.W", w, 1, rows, inputs),
                g.Floats($"{name}l{k}.R", Reorder(cell, weights(p.WeightHh)), 1, rows, hidden),
                g.Floats($"{name}l{k}.B", bias, 1, 2 * rows),
                lengths,
                h0?[k] ?? "",
                .. lstm ? [c0?[k] ?? ""] : Array.Empty<string>(),
            ];
            var outputs = g.Node(OpType(cell), inputNames, lstm ? [null, null, null] : [null, null], Attributes(cell, hidden));
            y = outputs[0];
            finalH[k] = outputs[1];
            if (lstm)
                finalC[k] = outputs[2];
        }
        return new OnnxStackValues(g.Op("Squeeze", [y, g.Axes(1)]), finalH, finalC);
    }

    private static string OpType(CellKind cell) => cell switch
    {
        CellKind.Elman => "RNN",
        CellKind.Gru => "GRU",
        CellKind.Lstm => "LSTM",
        _ => throw new ArgumentOutOfRangeException(nameof(cell), cell, "unknown cell"),
    };

    private static Onnx.AttributeProto[] Attributes(CellKind cell, int hidden) => cell switch
    {
        CellKind.Elman => [OnnxGraph.Int("hidden_size", hidden), OnnxGraph.Str("direction", Direction)], // activations default to Tanh
        CellKind.Gru => [OnnxGraph.Int("hidden_size", hidden), OnnxGraph.Str("direction", Direction), OnnxGraph.Int("linear_before_reset", 1)],
        CellKind.Lstm => [OnnxGraph.Int("hidden_size", hidden), OnnxGraph.Str("direction", Direction)],
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

    /// <summary>[cols, rows] from [rows, cols].</summary>
    private static float[] Transpose(float[] m, int rows, int cols)
    {
        var t = new float[m.Length];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                t[c * rows + r] = m[r * cols + c];
        return t;
    }
}
