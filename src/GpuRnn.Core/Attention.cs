using GpuRnn.Kernels;
using ILGPU;

namespace GpuRnn;

/// <summary>An encoder–decoder's attention over the encoder's top-layer outputs (README "Attention").</summary>
public enum AttentionKind
{
    /// <summary>None: the decoder's top layer feeds the output layer directly.</summary>
    None,

    /// <summary>Luong dot: score(h_t, m_j) = h_t · m_j.</summary>
    Dot,

    /// <summary>Luong general: score(h_t, m_j) = h_t · W_a m_j, W_a [H, H].</summary>
    General,

    /// <summary>
    /// Bahdanau additive: score(s, m_j) = v · tanh(W_q s + W_k m_j) with s the decoder's first-layer state before a step, whose
    /// context enters that step's input (<see cref="AdditiveAttention"/>).
    /// </summary>
    Additive,
}

/// <summary>The names of <see cref="AttentionKind"/> on the command line and in <c>gpurnn.config</c>.</summary>
public static class AttentionNames
{
    /// <summary><c>none</c>, <c>dot</c>, <c>general</c> or <c>additive</c>.</summary>
    public static string Name(AttentionKind kind) => kind switch
    {
        AttentionKind.None => "none",
        AttentionKind.Dot => "dot",
        AttentionKind.General => "general",
        AttentionKind.Additive => "additive",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown attention"),
    };

    /// <summary>The kind in words: <c>Luong dot</c>, <c>Luong general</c>, <c>Bahdanau additive</c> (<c>none</c>).</summary>
    public static string Title(AttentionKind kind) => kind switch
    {
        AttentionKind.None => "none",
        AttentionKind.Dot => "Luong dot",
        AttentionKind.General => "Luong general",
        AttentionKind.Additive => "Bahdanau additive",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown attention"),
    };

    /// <summary>The kind of a name.</summary>
    /// <exception cref="GpuRnnException">Unknown name.</exception>
    public static AttentionKind Parse(string name) => name switch
    {
        "none" => AttentionKind.None,
        "dot" => AttentionKind.Dot,
        "general" => AttentionKind.General,
        "additive" => AttentionKind.Additive,
        _ => throw new GpuRnnException($"--attention {name}: use none, dot, general or additive"),
    };
}

/// <summary>
/// Luong attention over all decoder steps at once (README "Attention", DESIGN.md §3e). With the decoder's top-layer
/// outputs H_dec [s, B, H] and the encoder's M [S, B, H] (both time-major, read in place by batched GEMMs with
/// leading dimension B·H and batch stride H), per sequence b:
/// Q = H_dec (dot) or H_dec·W_a (general); scores = Q_b·M_bᵀ [s, S]; A = softmax over the true source positions
/// j &lt; len_b (0 elsewhere); C_b = A_b·M_b [s, H]; h̃ = tanh(C·W_c[:, :H]ᵀ + H_dec·W_c[:, H:]ᵀ) [s, B, H], which
/// the output layer reads instead of H_dec. No bias inside the tanh (Luong eq. 5). Owns the workspace of windows of
/// up to T decoder and S source steps; the backward sits beside the forward and runs its steps in reverse.
/// </summary>
internal sealed class LuongAttention
{
    private readonly AttentionKind kind;
    private readonly int hidden;
    private readonly ArrayView<int> lengths;     // [B] true source lengths
    private readonly int[] hostLengths;          // [B]
    private readonly ArrayView<float> query;     // [T, B, H] general: H_dec·W_a
    private readonly ArrayView<float> weights;   // [T, B, S] scores, then the attention weights A
    private readonly ArrayView<float> context;   // [T, B, H] C
    private readonly ArrayView<float> state;     // [T, B, H] h̃
    private readonly ArrayView<float> dWeights;  // [T, B, S] training: dA, then dScores
    private readonly ArrayView<float> dContext;  // [T, B, H] training: dC
    private readonly ArrayView<float> dState;    // [T, B, H] training: dh̃ (written by the output layer), then the pre-tanh gradient
    private readonly ArrayView<float> dQuery;    // [T, B, H] training, general: dQ
    private int sourceSteps;

    public LuongAttention(DeviceBuffers buffers, ModelConfig config, int batch, int capacity, int sourceCapacity, bool training)
    {
        kind = config.Attention;
        hidden = config.Hidden;
        long p = (long)batch * capacity, bh = p * hidden, bs = p * Math.Max(sourceCapacity, 1);
        lengths = buffers.Ints(batch);
        hostLengths = buffers.HostInts(batch);
        bool general = kind == AttentionKind.General;
        query = general ? buffers.Floats(bh) : default;
        weights = buffers.Floats(bs);
        context = buffers.Floats(bh);
        state = buffers.Floats(bh);
        if (training)
        {
            dWeights = buffers.Floats(bs);
            dContext = buffers.Floats(bh);
            dState = buffers.Floats(bh);
            dQuery = general ? buffers.Floats(bh) : default;
        }
    }

    /// <summary>The attention weights of the last forward, [s, B, S'] with S' the source window's steps (row t·B + b).</summary>
    public ArrayView<float> Weights => weights;

    /// <summary>Source steps S' of the last <see cref="SetSource"/>.</summary>
    public int SourceSteps => sourceSteps;

    /// <summary>h̃ of the last forward, [s·B, H].</summary>
    public ArrayView<float> Forwarded(int positions) => state.SubView(0, (long)positions * hidden);

    /// <summary>The gradient w.r.t. h̃, [s·B, H]: the output layer's backward writes it.</summary>
    public ArrayView<float> StateGradient(int positions) => dState.SubView(0, (long)positions * hidden);

    /// <summary>Uploads the source window's true lengths (the mask) and its step count.</summary>
    public void SetSource(DeviceKernels k, TokenWindow source)
    {
        int b = source.Batch;
        source.Lengths.AsSpan(0, b).CopyTo(hostLengths);
        k.Upload<int>(hostLengths.AsSpan(0, b), lengths);
        sourceSteps = source.Steps;
    }

    /// <summary>h̃ [s·B, H] from the decoder's top-layer outputs <paramref name="top"/> [s·B, H] and the memory [S'·B, H].</summary>
    public ArrayView<float> Forward(RnnModel model, int batch, int steps, ArrayView<float> top, ArrayView<float> memory)
    {
        var k = model.Device.Kernels;
        var a = model.Layout.Attention!;
        int b = batch, s = steps, n = sourceSteps, h = hidden, p = s * b;
        var wc = model.View(a.Combine!);
        var q = top;
        if (kind == AttentionKind.General)
        {
            q = query.SubView(0, (long)p * h);
            k.Gemm(new GemmShape(p, h, h, transA: false, transB: false), 1f, top, model.View(a.Weight!), 0f, q); // Q = H_dec·W_a
        }
        var w = weights.SubView(0, (long)p * n);
        var c = context.SubView(0, (long)p * h);
        var hs = state.SubView(0, (long)p * h);
        k.Gemm(PerSequence(s, n, h, transA: false, transB: true, b, h, h, n), 1f, q, memory, 0f, w); // scores_b = Q_b·M_bᵀ [s, S']
        k.MaskedSoftmaxForward(p, b, n, lengths, w, w);                                                 // A
        k.Gemm(PerSequence(s, h, n, transA: false, transB: false, b, n, h, h), 1f, w, memory, 0f, c);  // C_b = A_b·M_b [s, H]
        k.Gemm(Combine(p, transB: true), 1f, c, wc, 0f, hs);                                            // C·W_c[:, :H]ᵀ
        k.Gemm(Combine(p, transB: true), 1f, top, wc.SubView(h, wc.Length - h), 1f, hs);               // + H_dec·W_c[:, H:]ᵀ
        k.TanhForward((long)p * h, hs);                                                                  // h̃
        return hs;
    }

    /// <summary>
    /// From dh̃ (<see cref="StateGradient"/>, written by the output layer): the parameter gradients of W_c (and W_a) into
    /// <paramref name="gradients"/>, dH_dec into <paramref name="dTop"/> [s·B, H] and dM into <paramref name="dMemory"/> [S'·B, H], both overwritten.
    /// </summary>
    public void Backward(RnnModel model, ArrayView<float> gradients, int batch, int steps, ArrayView<float> top, ArrayView<float> memory, ArrayView<float> dTop,
        ArrayView<float> dMemory)
    {
        var k = model.Device.Kernels;
        var a = model.Layout.Attention!;
        int b = batch, s = steps, n = sourceSteps, h = hidden, p = s * b;
        var wc = model.View(a.Combine!);
        var gc = RnnModel.ViewOf(gradients, a.Combine!);
        var w = weights.SubView(0, (long)p * n);
        var dw = dWeights.SubView(0, (long)p * n);
        var c = context.SubView(0, (long)p * h);
        var dc = dContext.SubView(0, (long)p * h);
        var dz = dState.SubView(0, (long)p * h);
        bool general = kind == AttentionKind.General;
        var q = general ? query.SubView(0, (long)p * h) : top;
        k.TanhBackward((long)p * h, state, dz, dz);                                                                    // dZ = dh̃·(1 − h̃²)
        var dW = new GemmShape(h, h, p, transA: true, transB: false).Strided(h, h, 2 * h);
        k.Gemm(dW, 1f, dz, c, 0f, gc);                                                                                // dW_c[:, :H] = dZᵀ·C
        k.Gemm(dW, 1f, dz, top, 0f, gc.SubView(h, gc.Length - h));                                                   // dW_c[:, H:] = dZᵀ·H_dec
        k.Gemm(Combine(p, transB: false), 1f, dz, wc, 0f, dc);                                                       // dC = dZ·W_c[:, :H]
        k.Gemm(Combine(p, transB: false), 1f, dz, wc.SubView(h, wc.Length - h), 0f, dTop);                           // dH_dec = dZ·W_c[:, H:]
        k.Gemm(PerSequence(s, n, h, transA: false, transB: true, b, h, h, n), 1f, dc, memory, 0f, dw);              // dA_b = dC_b·M_bᵀ
        k.Gemm(PerSequence(n, h, s, transA: true, transB: false, b, n, h, h), 1f, w, dc, 0f, dMemory);              // dM_b = A_bᵀ·dC_b
        k.MaskedSoftmaxBackward(p, b, n, lengths, w, dw, dw);                                                          // dScores (0 on padding)
        var dq = general ? dQuery.SubView(0, (long)p * h) : dTop;
        k.Gemm(PerSequence(s, h, n, transA: false, transB: false, b, n, h, h), 1f, dw, memory, general ? 0f : 1f, dq); // dQ_b (+)= dScores_b·M_b
        k.Gemm(PerSequence(n, h, s, transA: true, transB: false, b, n, h, h), 1f, dw, q, 1f, dMemory);              // dM_b += dScores_bᵀ·Q_b
        if (!general)
            return;
        var wa = a.Weight!;
        k.Gemm(new GemmShape(p, h, h, transA: false, transB: true), 1f, dq, model.View(wa), 1f, dTop);             // dH_dec += dQ·W_aᵀ
        k.Gemm(new GemmShape(h, h, p, transA: true, transB: false), 1f, top, dq, 0f, RnnModel.ViewOf(gradients, wa)); // dW_a = H_decᵀ·dQ
    }

    /// <summary>
    /// One product per sequence b over time-major blocks: op(A_b) [M, K] · op(B_b) [K, N] → C_b [M, N], where each
    /// operand's stored rows are B·width apart and sequence b starts b·width in (its width: stored columns).
    /// </summary>
    private static GemmShape PerSequence(int m, int n, int k, bool transA, bool transB, int batch, int widthA, int widthB, int widthC) =>
        new GemmShape(m, n, k, transA, transB).Strided(batch * widthA, batch * widthB, batch * widthC).Batched(batch, widthA, widthB, widthC);

    /// <summary>[P, H]·(half of W_c [H, 2H]) as stored: transposed for the forward (·W_cᵀ), plain for the backward (·W_c).</summary>
    private GemmShape Combine(int positions, bool transB) =>
        new GemmShape(positions, hidden, hidden, transA: false, transB).Strided(hidden, 2 * hidden, hidden);
}
