using GpuRnn.Kernels;
using ILGPU;

namespace GpuRnn;

/// <summary>The device views of one layer's parameter block (or of its gradients: same layout).</summary>
/// <param name="WeightIh">[G, V] for layer 0, [G, H] above.</param>
/// <param name="WeightHh">[G, H].</param>
/// <param name="BiasIh">[G].</param>
/// <param name="BiasHh">[G].</param>
internal readonly record struct CellWeights(ArrayView<float> WeightIh, ArrayView<float> WeightHh, ArrayView<float> BiasIh, ArrayView<float> BiasHh)
{
    /// <summary>The views of <paramref name="block"/> inside <paramref name="flat"/> (the parameters, or the gradients).</summary>
    public static CellWeights Of(ArrayView<float> flat, CellParameters block) => new(
        RnnModel.ViewOf(flat, block.WeightIh), RnnModel.ViewOf(flat, block.WeightHh), RnnModel.ViewOf(flat, block.BiasIh), RnnModel.ViewOf(flat, block.BiasHh));
}

/// <summary>
/// One recurrent cell (DESIGN.md §2, §3a, §3b): what a layer of it holds (G = g·H gate rows, the
/// activations its forward saves for its backward, an LSTM's cell state) and the launches of its
/// forward and backward steps. The stack runs it over time and never looks inside; its kernels live
/// in <c>kernels/</c>. Positions are time-major, p = t·B + b.
/// </summary>
internal sealed class Cell
{
    /// <param name="kind">Elman, GRU or LSTM.</param>
    /// <param name="hidden">H.</param>
    /// <param name="belowWidth">Columns of the outputs of the layer below that the layers above the first read: H, or 2H under a bidirectional layer.</param>
    public Cell(CellKind kind, int hidden, int belowWidth)
    {
        Kind = kind;
        Hidden = hidden;
        BelowWidth = belowWidth;
        Width = CellShapes.Gates(kind) * hidden;
        SavedWidth = CellShapes.SavedWidth(kind, hidden);
        HasCellState = CellShapes.HasCellState(kind);
        FoldedHhColumns = CellShapes.FoldedHhColumns(kind, hidden);
    }

    /// <summary>Elman, GRU or LSTM.</summary>
    public CellKind Kind { get; }

    /// <summary>H.</summary>
    public int Hidden { get; }

    /// <summary>Columns of the layer below's outputs that a layer above the first reads (W_ih is [G, BelowWidth]).</summary>
    public int BelowWidth { get; }

    /// <summary>G = g·H: columns of the pre-activations of one position.</summary>
    public int Width { get; }

    /// <summary>S: columns per position the forward saves for the backward (0 for Elman, whose tanh' comes from h).</summary>
    public int SavedWidth { get; }

    /// <summary>True when the state is (h, c) rather than h (LSTM).</summary>
    public bool HasCellState { get; }

    /// <summary>Columns of the hoisted input term that b_hh is folded into: all G, but a GRU's b_hn sits inside r ⊙ (W_hn h' + b_hn) and stays out (2H).</summary>
    public int FoldedHhColumns { get; }

    /// <summary>True when the hh-side pre-activation gradient differs from the input side's (GRU: dAh_n = dAx_n ⊙ r); otherwise one buffer serves both.</summary>
    public bool SeparateHhGradient => Kind == CellKind.Gru;

    /// <summary>True when the backward passes a direct-path gradient from step to step (GRU z ⊙ dh into h, LSTM f ⊙ dc into c).</summary>
    public bool HasCarry => Kind != CellKind.Elman;

    /// <summary>
    /// The hoisted input term of all <paramref name="positions"/> of a layer, x [P, G] = W_ih·input + b_ih
    /// + the folded columns of b_hh: a gather of columns of W_ih by token id for layer 0
    /// (<paramref name="ids"/>), one GEMM over the outputs <paramref name="below"/> [P, <see cref="BelowWidth"/>] of the layer below otherwise.
    /// </summary>
    public void InputTerm(DeviceKernels k, int positions, int vocab, bool firstLayer, ArrayView<int> ids, ArrayView<float> below, CellWeights w, ArrayView<float> x)
    {
        if (firstLayer)
            k.EmbeddingForward(positions, Width, vocab, ids, w.WeightIh, w.BiasIh, w.BiasHh, x, FoldedHhColumns);
        else
            k.GemmBias(new GemmShape(positions, Width, BelowWidth, transA: false, transB: true), below, w.WeightIh, x, w.BiasIh, w.BiasHh, FoldedHhColumns); // x = H_below · W_ihᵀ + b_ih + b_hh
    }

    /// <summary>
    /// One time step of <paramref name="batch"/> rows, ONE launch: h [B, H] (and an LSTM's c) from the
    /// previous state and x_t [B, G]; <paramref name="saved"/> [B, S] keeps the gate activations the
    /// backward step needs. Rows whose length in <paramref name="lengths"/> is ≤ <paramref name="step"/> hold their state.
    /// </summary>
    public void Forward(DeviceKernels k, int batch, CellWeights w, ArrayView<float> hPrev, ArrayView<float> cPrev, ArrayView<float> x,
        ArrayView<float> saved, ArrayView<float> h, ArrayView<float> c, ArrayView<int> lengths, int step) =>
        k.CellForward(Kind, batch, Hidden, hPrev, cPrev, w.WeightHh, w.BiasHh, x, saved, h, c, lengths, step);

    /// <summary>
    /// One backward step, ONE launch: the pre-activation gradients dAx and dAh [B, G] of step t (one view
    /// for both unless <see cref="SeparateHhGradient"/>) from the gradient dH [B, H] into h_t from above,
    /// step t + 1's dAh (when <paramref name="hasNext"/>) and the direct-path gradient
    /// <paramref name="carryNext"/> (step t + 1's, or one injected from outside the window at its last
    /// step; default for none); writes the direct-path gradient for step t − 1 into <paramref name="carry"/>.
    /// </summary>
    public void Backward(DeviceKernels k, int batch, bool hasNext, CellWeights w, ArrayView<float> dAhNext, ArrayView<float> dH, ArrayView<float> carryNext,
        ArrayView<float> hPrev, ArrayView<float> h, ArrayView<float> cPrev, ArrayView<float> c, ArrayView<float> saved,
        ArrayView<float> dAx, ArrayView<float> dAh, ArrayView<float> carry, ArrayView<int> lengths, int step) =>
        k.CellBackward(Kind, batch, Hidden, hasNext, dAhNext, w.WeightHh, dH, carryNext, hPrev, h, cPrev, c, saved, dAx, dAh, carry, lengths, step);

    /// <summary>
    /// All <paramref name="steps"/> forward steps of a layer, ONE launch (the fused recurrence): what
    /// <see cref="Forward"/> computes step by step, over the state blocks [T + 1, B, H], x [T, B, G] and saved [T, B, S].
    /// </summary>
    public void ForwardAll(DeviceKernels k, int batch, int steps, CellWeights w, ArrayView<float> hStates, ArrayView<float> cStates, ArrayView<float> x,
        ArrayView<float> saved, ArrayView<int> lengths) =>
        k.RecurrenceForward(Kind, batch, Hidden, steps, hStates, cStates, w.WeightHh, w.BiasHh, x, saved, lengths);

    /// <summary>
    /// All <paramref name="steps"/> backward steps of a layer, ONE launch (the fused recurrence): what <see cref="Backward"/>
    /// computes from t = T − 1 down to 0, with <paramref name="carryIn"/> injected at the last step (default for none).
    /// </summary>
    public void BackwardAll(DeviceKernels k, int batch, int steps, CellWeights w, ArrayView<float> dH, ArrayView<float> carryIn,
        ArrayView<float> hStates, ArrayView<float> cStates, ArrayView<float> saved, ArrayView<float> dAx, ArrayView<float> dAh, ArrayView<float> carry,
        ArrayView<int> lengths) =>
        k.RecurrenceBackward(Kind, batch, Hidden, steps, w.WeightHh, dH, carryIn, hStates, cStates, saved, dAx, dAh, carry, lengths);

    /// <summary>
    /// The parameter gradients of a layer from the whole window at once (DESIGN.md §3 step 6):
    /// dW_hh [G, H] = Σ_t dAh_tᵀ·h_{t−1} as ONE GEMM over all P positions, db_hh = colsum dAh,
    /// db_ih = colsum dAx (one launch writing both when dAh is dAx), dW_ih a scatter of dAx into token
    /// columns (layer 0) or dAxᵀ·H_below; and the gradient into the layer below, dH_below (+)= dAx·W_ih
    /// (β = 1 adds to what is there).
    /// </summary>
    public void ParameterGradients(DeviceKernels k, int positions, int vocab, bool firstLayer, CellWeights w, CellWeights g,
        ArrayView<float> dAx, ArrayView<float> dAh, ArrayView<float> hPrevs, ArrayView<float> below,
        ArrayView<int> tokenOffsets, ArrayView<int> tokenPositions, ArrayView<float> dBelow, float dBelowBeta)
    {
        k.Gemm(new GemmShape(Width, Hidden, positions, transA: true, transB: false), 1f, dAh, hPrevs, 0f, g.WeightHh);
        if (SeparateHhGradient)
        {
            k.ColumnSum(positions, Width, dAx, g.BiasIh, g.BiasIh);
            k.ColumnSum(positions, Width, dAh, g.BiasHh, g.BiasHh);
        }
        else
        {
            k.ColumnSum(positions, Width, dAx, g.BiasIh, g.BiasHh); // db_ih = db_hh
        }
        if (firstLayer)
        {
            k.EmbeddingBackward(Width, vocab, tokenOffsets, tokenPositions, dAx, g.WeightIh);
            return;
        }
        k.Gemm(new GemmShape(Width, BelowWidth, positions, transA: true, transB: false), 1f, dAx, below, 0f, g.WeightIh);       // dW_ih = dAxᵀ · H_below
        k.Gemm(new GemmShape(positions, BelowWidth, Width, transA: false, transB: false), 1f, dAx, w.WeightIh, dBelowBeta, dBelow); // dH_below (+)= dAx · W_ih
    }

    /// <summary>
    /// The gradients into the initial state (an encoder–decoder's bridge) from step 0: dh_0 [B, H] =
    /// dAh_0·W_hh, plus a GRU's direct path z_0 ⊙ dh_0 (<paramref name="carry0"/>); an LSTM's dc_0 is
    /// its direct path f_0 ⊙ dc_0 (<paramref name="carry0"/>) into <paramref name="dc0"/>.
    /// </summary>
    public void InitialStateGradient(DeviceKernels k, int batch, CellWeights w, ArrayView<float> dAh0, ArrayView<float> carry0, ArrayView<float> dh0, ArrayView<float> dc0)
    {
        float beta = 0f;
        if (Kind == CellKind.Gru)
        {
            k.Copy(carry0, dh0);
            beta = 1f;
        }
        else if (HasCellState)
        {
            k.Copy(carry0, dc0);
        }
        k.Gemm(new GemmShape(batch, Hidden, Width, transA: false, transB: false), 1f, dAh0, w.WeightHh, beta, dh0);
    }
}
