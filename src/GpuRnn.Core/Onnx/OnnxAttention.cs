namespace GpuRnn;

/// <summary>
/// Luong attention (dot or general; <see cref="LuongAttention"/>, DESIGN.md §3e) over all decoder steps at once, in
/// ONNX operators. With the decoder's top outputs H_dec [T, B, H] and the encoder's memory M [S, B, H] (time-major),
/// per sequence b, batch-major for <c>MatMul</c>'s batching:
/// Q = H_dec (dot) or H_dec·W_a (general); scores_b = Q_b·M_bᵀ [T, S]; positions j ≥ len_b set to −∞ (a mask from
/// <c>Range</c> and <c>Less</c> against the source lengths, applied with <c>Where</c>), so the <c>Softmax</c> gives them
/// exactly 0 as the engine's masked softmax does; C_b = A_b·M_b; h̃ = tanh([C; H_dec]·W_cᵀ) = tanh(W_c[:, :H]·c + W_c[:, H:]·h),
/// no bias (Luong eq. 5), which the output layer reads. Every source length must be at least 1.
/// </summary>
internal static class OnnxAttention
{
    /// <summary>
    /// Adds the attention of <paramref name="parameters"/> (hidden size <paramref name="hidden"/>) reading
    /// <paramref name="top"/> [T, B, H], <paramref name="memory"/> [S, B, H] and the int64 <paramref name="sourceLengths"/> [B];
    /// the weights A [B, T, S] become the value named <paramref name="weightsOutput"/>. Returns h̃ [T, B, H].
    /// </summary>
    public static string Add(OnnxGraph g, AttentionParameters parameters, int hidden, Func<ParameterTensor, float[]> weights,
        string top, string memory, string sourceLengths, string weightsOutput)
    {
        string query = parameters.Kind switch
        {
            AttentionKind.Dot => top,
            AttentionKind.General => g.Op("MatMul", [top, g.Floats(parameters.Weight!.Name, weights(parameters.Weight), hidden, hidden)]), // H_dec·W_a
            _ => throw new ArgumentOutOfRangeException(nameof(parameters), parameters.Kind, "Luong attention is dot or general"),
        };
        string batchMajor = g.Op("Transpose", [memory], null, OnnxGraph.Ints("perm", 1, 0, 2));                                  // M_b [B, S, H]
        string keys = g.Op("Transpose", [memory], null, OnnxGraph.Ints("perm", 1, 2, 0));                                        // M_bᵀ [B, H, S]
        string scores = g.Op("MatMul", [g.Op("Transpose", [query], null, OnnxGraph.Ints("perm", 1, 0, 2)), keys]);               // [B, T, S]

        // The mask [B, 1, S]: position j < len_b.
        string steps = g.Op("Squeeze", [g.Op("Shape", [memory], null, OnnxGraph.Int("start", 0), OnnxGraph.Int("end", 1)), g.Axes(0)]); // S, a scalar
        string positions = g.Op("Range", [g.Long("zero", 0), steps, g.Long("one", 1)]);                                        // [S]
        string limits = g.Op("Unsqueeze", [sourceLengths, g.Longs("axes_1_2", 1, 2)]);                                          // [B, 1, 1]
        string mask = g.Op("Less", [positions, limits]);
        string masked = g.Op("Where", [mask, scores, g.Float("minus_infinity", float.NegativeInfinity)]);
        g.Op("Softmax", [masked], weightsOutput, OnnxGraph.Int("axis", -1));                                                    // A [B, T, S]

        string context = g.Op("Transpose", [g.Op("MatMul", [weightsOutput, batchMajor])], null, OnnxGraph.Ints("perm", 1, 0, 2)); // C [T, B, H]
        string joined = g.Op("Concat", [context, top], null, OnnxGraph.Int("axis", 2));                                         // [C; H_dec] [T, B, 2H]
        var wc = parameters.Combine!; // W_c [H, 2H]
        return g.Op("Tanh", [g.Op("MatMul", [joined, g.TransposedFloats(wc.Name + "_transposed", weights(wc), hidden, 2 * hidden)])]); // h̃ [T, B, H]
    }
}
