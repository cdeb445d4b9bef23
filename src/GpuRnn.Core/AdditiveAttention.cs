using GpuRnn.Kernels;
using ILGPU;

namespace GpuRnn;

/// <summary>
/// Bahdanau (additive) attention that feeds the context into each decoder step's input (README "Attention",
/// DESIGN.md §3e, kernels/AdditiveAttention.cs). With the memory M [S, B, H] (the encoder's top outputs, time-major)
/// and s_t = h_t of the decoder's FIRST layer before step t (the carried or encoder-given state at t = 0):
/// q_t = W_q s_t, e_tj = v · tanh(q_t + W_k m_j), a_t = softmax over j &lt; len_b, c_t = Σ_j a_tj m_j, and W_ctx c_t is
/// added to the first layer's input term of step t (as if c_t were concatenated to the step's input; layers above read
/// the layer below as without attention, so for L &gt; 1 the bottom layer attends, as in GNMT). The output layer reads
/// the decoder's top outputs. Keys K = M·W_kᵀ and values V = M·W_ctxᵀ [S, B, G] are computed once per source window
/// (<see cref="Prepare"/>); then each step is 2 launches forward and 1 backward (<see cref="IStepInput"/>), and the
/// parameter and memory gradients 8 launches after the decoder's backward (<see cref="Backward(RnnModel, ArrayView{float}, int, ArrayView{float}, ArrayView{float}, ArrayView{float}, ArrayView{float})"/>).
/// </summary>
internal sealed class AdditiveAttention : IStepInput
{
    private readonly int hidden, gates;
    private readonly ArrayView<int> lengths;     // [B] true source lengths
    private readonly int[] hostLengths;          // [B]
    private readonly ArrayView<float> keys;      // [S, B, H] K = M·W_kᵀ
    private readonly ArrayView<float> values;    // [S, B, G] V = M·W_ctxᵀ
    private readonly ArrayView<float> query;     // [T, B, H] q_t = W_q s_t
    private readonly ArrayView<float> weights;   // [T, B, S] a_t
    private readonly ArrayView<float> dScores;   // [T, B, S] training: de_t
    private readonly ArrayView<float> dQuery;    // [T, B, H] training: dq_t
    private readonly ArrayView<float> dKeys;     // [S, B, H] training
    private readonly ArrayView<float> dValues;   // [S, B, G] training
    private ArrayView<float> wq, v;              // the model's W_q and v, set by Prepare
    private AdditiveSizes sizes;

    public AdditiveAttention(DeviceBuffers buffers, ModelConfig config, int batch, int capacity, int sourceCapacity, bool training)
    {
        hidden = config.Hidden;
        gates = CellShapes.Gates(config.Cell) * hidden;
        long p = (long)batch * capacity, sb = (long)batch * Math.Max(sourceCapacity, 1);
        lengths = buffers.Ints(batch);
        hostLengths = buffers.HostInts(batch);
        keys = buffers.Floats(sb * hidden);
        values = buffers.Floats(sb * gates);
        query = buffers.Floats(p * hidden);
        weights = buffers.Floats(p * Math.Max(sourceCapacity, 1));
        if (training)
        {
            dScores = buffers.Floats(p * Math.Max(sourceCapacity, 1));
            dQuery = buffers.Floats(p * hidden);
            dKeys = buffers.Floats(sb * hidden);
            dValues = buffers.Floats(sb * gates);
        }
    }

    /// <summary>The attention weights of the last forward, [s, B, S'] with S' the source window's steps (row t·B + b).</summary>
    public ArrayView<float> Weights => weights;

    /// <summary>Source steps S' of the last <see cref="Prepare"/>.</summary>
    public int SourceSteps => sizes.SourceSteps;

    /// <summary>
    /// For a new source window: its true lengths up (the mask), and the keys and values of <paramref name="memory"/> [S'·B, H]
    /// under the model's W_k and W_ctx (2 GEMMs).
    /// </summary>
    public void Prepare(RnnModel model, TokenWindow source, ArrayView<float> memory)
    {
        var k = model.Device.Kernels;
        var a = model.Layout.Attention!;
        int b = source.Batch, n = source.Steps;
        source.Lengths.AsSpan(0, b).CopyTo(hostLengths);
        k.Upload<int>(hostLengths.AsSpan(0, b), lengths);
        sizes = new AdditiveSizes(b, n, hidden, gates);
        wq = model.View(a.Query!);
        v = model.View(a.Score!);
        int rows = n * b;
        k.Gemm(new GemmShape(rows, hidden, hidden, transA: false, transB: true), 1f, memory, model.View(a.Key!), 0f, keys.SubView(0, (long)rows * hidden));      // K = M·W_kᵀ
        k.Gemm(new GemmShape(rows, gates, hidden, transA: false, transB: true), 1f, memory, model.View(a.Context!), 0f, values.SubView(0, (long)rows * gates)); // V = M·W_ctxᵀ
    }

    /// <summary>Step t: q_t and a_t from the first layer's state <paramref name="state"/> [B, H], then x [B, G] += Σ_j a_tj V_j (2 launches).</summary>
    public void Forward(DeviceKernels k, int t, ArrayView<float> state, ArrayView<float> x)
    {
        long bh = (long)sizes.Batch * hidden, bs = (long)sizes.Batch * sizes.SourceSteps;
        var a = weights.SubView(t * bs, bs);
        k.AdditiveScores(sizes, lengths, state, wq, Keys, v, query.SubView(t * bh, bh), a);
        k.AdditiveInput(sizes, lengths, a, Values, x);
    }

    /// <summary>Step t's backward from dx [B, G] (its input-side pre-activation gradient): W_qᵀ dq added to <paramref name="dState"/> [B, H] (1 launch).</summary>
    public void Backward(DeviceKernels k, int t, ArrayView<float> dx, ArrayView<float> dState)
    {
        long bh = (long)sizes.Batch * hidden, bs = (long)sizes.Batch * sizes.SourceSteps;
        k.AdditiveStepBackward(sizes, lengths, dx, Values, weights.SubView(t * bs, bs), query.SubView(t * bh, bh), Keys, v, wq,
            dScores.SubView(t * bs, bs), dQuery.SubView(t * bh, bh), dState);
    }

    /// <summary>
    /// After the decoder's backward over <paramref name="steps"/> steps: the gradients of W_ctx, W_k, v and W_q into
    /// <paramref name="gradients"/> and dM into <paramref name="dMemory"/> [S'·B, H] (overwritten), from the first layer's
    /// states h_0 … h_{s−1} <paramref name="states"/> [s·B, H], its input-side pre-activation gradients <paramref name="dx"/> [s·B, G]
    /// and the memory [S'·B, H] (8 launches).
    /// </summary>
    public void Backward(RnnModel model, ArrayView<float> gradients, int steps, ArrayView<float> states, ArrayView<float> dx, ArrayView<float> memory,
        ArrayView<float> dMemory)
    {
        var k = model.Device.Kernels;
        var a = model.Layout.Attention!;
        int b = sizes.Batch, n = sizes.SourceSteps, h = hidden, g = gates, p = steps * b, rows = n * b;
        var dV = dValues.SubView(0, (long)rows * g);
        var dK = dKeys.SubView(0, (long)rows * h);
        // dV_b = A_bᵀ·dX_b [S', G] per sequence (A read in place as [s, S'] with row pitch B·S', dX as [s, G] with pitch B·G).
        var perSequence = new GemmShape(n, g, steps, transA: true, transB: false).Strided(b * n, b * g, b * g).Batched(b, n, g, g);
        k.Gemm(perSequence, 1f, weights.SubView(0, (long)p * n), dx, 0f, dV);
        k.Gemm(new GemmShape(g, h, rows, transA: true, transB: false), 1f, dV, memory, 0f, RnnModel.ViewOf(gradients, a.Context!)); // dW_ctx = dVᵀ·M
        k.Gemm(new GemmShape(rows, h, g, transA: false, transB: false), 1f, dV, model.View(a.Context!), 0f, dMemory);               // dM = dV·W_ctx
        k.AdditiveKeysBackward(sizes, steps, lengths, dScores.SubView(0, (long)p * n), query.SubView(0, (long)p * h), Keys, v, dK,
            RnnModel.ViewOf(gradients, a.Score!));                                                                                    // dK, dv
        k.Gemm(new GemmShape(h, h, rows, transA: true, transB: false), 1f, dK, memory, 0f, RnnModel.ViewOf(gradients, a.Key!));       // dW_k = dKᵀ·M
        k.Gemm(new GemmShape(rows, h, h, transA: false, transB: false), 1f, dK, model.View(a.Key!), 1f, dMemory);                   // dM += dK·W_k
        k.Gemm(new GemmShape(h, h, p, transA: true, transB: false), 1f, dQuery.SubView(0, (long)p * h), states, 0f,
            RnnModel.ViewOf(gradients, a.Query!));                                                                                     // dW_q = dQᵀ·S
    }

    private ArrayView<float> Keys => keys.SubView(0, (long)sizes.SourceSteps * sizes.Batch * hidden);

    private ArrayView<float> Values => values.SubView(0, (long)sizes.SourceSteps * sizes.Batch * gates);
}
