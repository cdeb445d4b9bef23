using GpuRnn.Kernels;
using DataType = Onnx.TensorProto.Types.DataType;

namespace GpuRnn;

/// <summary>
/// An encoder–decoder's attention (DESIGN.md §3e) in ONNX operators, over the encoder's memory M [S, B, H] (its top
/// outputs, time-major) with a mask of the true source positions j &lt; len_b (<c>Range</c> and <c>Less</c> against the
/// source lengths, applied with <c>Where</c> as −∞ before the <c>Softmax</c>, so padded positions get exactly 0 weight as in
/// the engine's masked softmax; every source length must be at least 1). The weights become an output [B, T, S].
/// <list type="bullet">
/// <item>Luong (dot, general; <see cref="LuongAttention"/>), after the decoder, for all steps at once, batch-major for
/// <c>MatMul</c>'s batching: Q = H_dec (dot) or H_dec·W_a (general); scores_b = Q_b·M_bᵀ [T, S]; C_b = A_b·M_b;
/// h̃ = tanh([C; H_dec]·W_cᵀ) = tanh(W_c[:, :H]·c + W_c[:, H:]·h), no bias (Luong eq. 5), which the output layer reads.</item>
/// <item>Bahdanau (additive; <see cref="AdditiveAttention"/>), inside the decoder's first layer: its context enters each
/// step's input, so that layer is a <c>Scan</c> over the steps whose body computes, from the layer's state s before the
/// step, q = W_q s, e_j = v·tanh(q + W_k m_j), a = softmax over the true positions, c = Σ_j a_j m_j, and runs one step of
/// the cell's own ONNX operator on the input [x; c] with W = [W_ih | W_ctx] (as if c were concatenated to the input);
/// past a sequence's length the state is held, as the engine holds it. The layers above are ordinary nodes.</item>
/// </list>
/// </summary>
internal static class OnnxAttention
{
    /// <summary>
    /// Adds Luong attention of <paramref name="parameters"/> (hidden size <paramref name="hidden"/>) reading
    /// <paramref name="top"/> [T, B, H], <paramref name="memory"/> [S, B, H] and the int64 <paramref name="sourceLengths"/> [B];
    /// the weights A [B, T, S] become the value named <paramref name="weightsOutput"/>. Returns h̃ [T, B, H].
    /// </summary>
    public static string AddLuong(OnnxGraph g, AttentionParameters parameters, int hidden, Func<ParameterTensor, float[]> weights,
        string top, string memory, string sourceLengths, string weightsOutput)
    {
        string query = parameters.Kind switch
        {
            AttentionKind.Dot => top,
            AttentionKind.General => g.Op("MatMul", [top, g.Floats(parameters.Weight!.Name, weights(parameters.Weight), hidden, hidden)]), // H_dec·W_a
            _ => throw new ArgumentOutOfRangeException(nameof(parameters), parameters.Kind, "Luong attention is dot or general"),
        };
        string batchMajor = BatchMajor(g, memory);                                                                              // M_b [B, S, H]
        string keys = g.Op("Transpose", [memory], null, OnnxGraph.Ints("perm", 1, 2, 0));                                        // M_bᵀ [B, H, S]
        string scores = g.Op("MatMul", [BatchMajor(g, query), keys]);                                                            // [B, T, S]
        string mask = Positions(g, memory, sourceLengths, 1, 2);                                                                 // [B, 1, S]
        g.Op("Softmax", [g.Op("Where", [mask, scores, g.Scalar(float.NegativeInfinity)])], weightsOutput, OnnxGraph.Int("axis", -1)); // A [B, T, S]

        string context = BatchMajor(g, g.Op("MatMul", [weightsOutput, batchMajor]));                                            // C [T, B, H]
        string joined = g.Op("Concat", [context, top], null, OnnxGraph.Int("axis", 2));                                         // [C; H_dec] [T, B, 2H]
        var wc = parameters.Combine!; // W_c [H, 2H]
        return g.Op("Tanh", [g.Op("MatMul", [joined, g.TransposedFloats(wc.Name + "_transposed", weights(wc), hidden, 2 * hidden)])]); // h̃ [T, B, H]
    }

    /// <summary>
    /// Adds the first layer of the decoder <paramref name="decoder"/> under Bahdanau attention <paramref name="parameters"/>:
    /// token ids <paramref name="ids"/> [T, B] with int64 lengths <paramref name="lengths"/> [B], from <paramref name="h0"/>
    /// (and <paramref name="c0"/>) [1, B, H], attending over <paramref name="memory"/> [S, B, H] with int64
    /// <paramref name="sourceLengths"/> [B]; the weights A [B, T, S] become <paramref name="weightsOutput"/>. Returns the
    /// layer's values as a one-layer stack (Y [T, 1, B, H], h and c after each sequence's last true step [1, B, H]) for
    /// <see cref="OnnxRecurrent.Add"/>'s <c>bottom</c>.
    /// </summary>
    public static OnnxStackValues AddAdditive(OnnxGraph g, RnnStack decoder, AttentionParameters parameters, int vocab, int hidden,
        Func<ParameterTensor, float[]> weights, string name, string ids, string lengths, string h0, string? c0, string memory, string sourceLengths,
        string weightsOutput)
    {
        var cell = decoder.Cell;
        bool lstm = CellShapes.HasCellState(cell);
        int rows = CellShapes.Gates(cell) * hidden; // G
        var p = decoder.Layers[0];
        var (x, w, inputs) = OnnxRecurrent.OneHotInput(g, $"{name}l0.input_table", [OnnxRecurrent.Reorder(cell, weights(p.WeightIh))], vocab, rows, ids);
        float[] context = OnnxRecurrent.Reorder(cell, weights(parameters.Context!)); // W_ctx [G, H], gate rows in ONNX's order
        var joined = new float[rows * (inputs + hidden)];                           // [W | W_ctx] [G, inputs + H]
        for (int r = 0; r < rows; r++)
        {
            Array.Copy(w, r * inputs, joined, r * (inputs + hidden), inputs);
            Array.Copy(context, r * hidden, joined, r * (inputs + hidden) + inputs, hidden);
        }
        string wJoined = g.Floats($"{name}l0.W", joined, 1, rows, inputs + hidden);
        string r0 = g.Floats($"{name}l0.R", OnnxRecurrent.Reorder(cell, weights(p.WeightHh)), 1, rows, hidden);
        string b0 = g.Floats($"{name}l0.B", [.. OnnxRecurrent.Reorder(cell, weights(p.BiasIh)), .. OnnxRecurrent.Reorder(cell, weights(p.BiasHh))], 1, 2 * rows);

        // Read by every step (outer-scope values of the body): K_b = (M·W_kᵀ)_b, M_b [B, S, H], W_qᵀ, v [H, 1], the mask [B, S].
        var key = parameters.Key!;
        string keys = BatchMajor(g, g.Op("MatMul", [memory, g.TransposedFloats(key.Name + "_transposed", weights(key), hidden, hidden)]));
        string values = BatchMajor(g, memory);
        string wq = g.TransposedFloats(parameters.Query!.Name + "_transposed", weights(parameters.Query), hidden, hidden);
        string v = g.Floats(parameters.Score!.Name, weights(parameters.Score), hidden, 1); // [1, H] stored: the same values as vᵀ [H, 1]
        string sourceMask = Positions(g, memory, sourceLengths, 1);                                                      // [B, S]
        string live = g.Op("Unsqueeze", [g.Op("Transpose", [Positions(g, ids, lengths, 1)], null, OnnxGraph.Ints("perm", 1, 0)), g.Axes(2)]); // [T, B, 1]: t < len_b

        var body = new OnnxGraph("bahdanau_step", "step_");
        string h = body.Input("step_h", DataType.Float, "B", hidden);
        string? c = lstm ? body.Input("step_c", DataType.Float, "B", hidden) : null;
        string xt = body.Input("step_x", DataType.Float, "B", inputs);
        string alive = body.Input("step_live", DataType.Bool, "B", 1);
        string q = body.Op("MatMul", [h, wq]);                                                                                 // q = W_q s [B, H]
        string e = body.Op("Squeeze", [body.Op("MatMul", [body.Op("Tanh", [body.Op("Add", [body.Op("Unsqueeze", [q, body.Axes(1)]), keys])]), v]), body.Axes(2)]); // [B, S]
        string a = body.Op("Softmax", [body.Op("Where", [sourceMask, e, g.Scalar(float.NegativeInfinity)])], null, OnnxGraph.Int("axis", -1)); // [B, S]
        string ct = body.Op("Squeeze", [body.Op("MatMul", [body.Op("Unsqueeze", [a, body.Axes(1)]), values]), body.Axes(1)]); // c = Σ_j a_j m_j [B, H]
        string input = body.Op("Unsqueeze", [body.Op("Concat", [xt, ct], null, OnnxGraph.Int("axis", 1)), body.Axes(0)]);   // [x; c] [1, B, inputs + H]
        string First(string state) => body.Op("Unsqueeze", [state, body.Axes(0)]);
        var step = OnnxRecurrent.Node(body, cell, hidden, 1, [input, wJoined, r0, b0, "", First(h), .. lstm ? [First(c!)] : Array.Empty<string>()]);
        string Held(string next, string state) => body.Op("Where", [alive, body.Op("Squeeze", [next, body.Axes(0)]), state]); // past the length: held
        string hNext = Held(step[1], h);
        body.Output(hNext, DataType.Float, "B", hidden);
        if (lstm)
            body.Output(Held(step[2], c!), DataType.Float, "B", hidden);
        body.Output(body.Op("Identity", [hNext]), DataType.Float, "B", hidden); // the step's output, stacked into Y
        body.Output(a, DataType.Float, "B", "S");

        string Squeezed(string state) => g.Op("Squeeze", [state, g.Axes(0)]);
        var scan = g.Node("Scan", [Squeezed(h0), .. lstm ? [Squeezed(c0!)] : Array.Empty<string>(), x, live], lstm ? [null, null, null, null] : [null, null, null],
            OnnxGraph.Graph("body", body), OnnxGraph.Int("num_scan_inputs", 2));
        g.Op("Transpose", [scan[^1]], weightsOutput, OnnxGraph.Ints("perm", 1, 0, 2)); // [T, B, S] → [B, T, S]
        string Layer(string state) => g.Op("Unsqueeze", [state, g.Axes(0)]);
        return new OnnxStackValues(g.Op("Unsqueeze", [scan[^2], g.Axes(1)]), [Layer(scan[0])], lstm ? [Layer(scan[1])] : [], 1);
    }

    /// <summary>[N, B, …] ↔ [B, N, …]: time-major to batch-major and back.</summary>
    private static string BatchMajor(OnnxGraph g, string value) => g.Op("Transpose", [value], null, OnnxGraph.Ints("perm", 1, 0, 2));

    /// <summary>
    /// Which positions j of <paramref name="steps"/> [N, B, …] are inside each sequence, j &lt; len_b (bool): the positions
    /// [N] against the int64 <paramref name="lengths"/> [B] unsqueezed on <paramref name="axes"/> ([B, 1]: [B, N]; [B, 1, 1]: [B, 1, N]).
    /// </summary>
    private static string Positions(OnnxGraph g, string steps, string lengths, params long[] axes)
    {
        string n = g.Op("Squeeze", [g.Op("Shape", [steps], null, OnnxGraph.Int("start", 0), OnnxGraph.Int("end", 1)), g.Axes(0)]); // N, a scalar
        string positions = g.Op("Range", [g.Scalar(0L), n, g.Scalar(1L)]);                                                      // [N]
        return g.Op("Less", [positions, g.Op("Unsqueeze", [lengths, g.Axes(axes)])]);
    }
}
