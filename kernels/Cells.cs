using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace GpuRnn.Kernels;

/// <summary>The recurrent cells (DESIGN.md §2); the numeric value is the gate count g, so a layer's gate rows are G = g·H.</summary>
public enum CellKind
{
    /// <summary><c>nn.RNN(nonlinearity='tanh')</c>: one gate.</summary>
    Elman = 1,

    /// <summary><c>nn.GRU</c>: gates [r; z; n].</summary>
    Gru = 3,

    /// <summary><c>nn.LSTM</c>: gates [i; f; g; o], and a cell state c besides h.</summary>
    Lstm = 4,
}

/// <summary>Sizes that follow from a cell kind: gate rows, what the forward step saves for the backward one, its state.</summary>
public static class CellShapes
{
    /// <summary>Gates g: 1, 3 or 4 (rows of W_ih, W_hh and both biases are g·H).</summary>
    public static int Gates(CellKind cell) => cell switch
    {
        CellKind.Elman => 1,
        CellKind.Gru => 3,
        CellKind.Lstm => 4,
        _ => throw new ArgumentOutOfRangeException(nameof(cell), cell, "unknown cell kind"),
    };

    /// <summary>
    /// Floats per batch row the forward step saves for the backward one: Elman 0 (tanh' comes from h),
    /// GRU 4H (r, z, n and hn = W_hn h' + b_hn), LSTM 4H (i, f, g, o after their activations).
    /// </summary>
    public static int SavedWidth(CellKind cell, int hidden) => cell switch
    {
        CellKind.Elman => 0,
        CellKind.Gru or CellKind.Lstm => 4 * hidden,
        _ => throw new ArgumentOutOfRangeException(nameof(cell), cell, "unknown cell kind"),
    };

    /// <summary>Whether the cell carries a cell state c besides h (LSTM).</summary>
    public static bool HasCellState(CellKind cell) => Gates(cell) == 4;

    /// <summary>
    /// Columns of b_hh folded into the hoisted input term: all G for Elman and LSTM; 2H for a GRU, whose
    /// b_hn sits inside r ⊙ (W_hn h' + b_hn) and is added by the step itself.
    /// </summary>
    public static int FoldedHhColumns(CellKind cell, int hidden) => cell == CellKind.Gru ? 2 * hidden : Gates(cell) * hidden;
}

/// <summary>
/// Which rows of a padded batch have ended at a time step (DESIGN.md §6): row b holds its state at step t
/// when lengths[b] ≤ t. Without lengths (<c>masked</c> = 0) no row holds.
/// </summary>
internal readonly struct HeldRows(ArrayView<int> lengths, int masked, int step)
{
    private readonly ArrayView<int> lengths = lengths;
    private readonly int masked = masked;
    private readonly int step = step;

    /// <summary>Whether row <paramref name="row"/> has ended: its state is held, its step gradients are 0.</summary>
    public bool Holds(int row) => masked != 0 && lengths[row] <= step;

    /// <summary>The same rows at step <paramref name="at"/> (the fused recurrence builds each step's from one).</summary>
    public HeldRows At(int at) => new(lengths, masked, at);
}

/// <summary>Activations of the gated cells, as PyTorch computes them.</summary>
internal static class CellMath
{
    /// <summary>σ(x) = 1 / (1 + e^−x).</summary>
    public static float Sigmoid(float x) => 1f / (1f + XMath.Exp(-x));

    /// <summary>tanh(x).</summary>
    public static float Tanh(float x) => XMath.Tanh(x);

    /// <summary>Zeroes <paramref name="count"/> elements of <paramref name="v"/> from <paramref name="at"/> on, <paramref name="stride"/> apart (one unit's gates).</summary>
    public static void Clear(ArrayView<float> v, long at, int stride, int count)
    {
        for (int k = 0; k < count; k++)
            v[at + (long)k * stride] = 0f;
    }
}

public sealed partial class DeviceKernels
{
    private void LoadCells()
    {
        LoadElman();
        LoadGru();
        LoadLstm();
    }

    /// <summary>
    /// One forward time step of one layer of <paramref name="cell"/>, ONE launch: the recurrent GEMM
    /// <c>hPrev·W_hhᵀ</c> [B, G] fused with the cell's gates (DESIGN.md §2, §3a).
    /// </summary>
    /// <param name="cell">The cell kind.</param>
    /// <param name="batch">B.</param>
    /// <param name="hidden">H.</param>
    /// <param name="hPrev">[B, H] h_{t−1}.</param>
    /// <param name="cPrev">[B, H] c_{t−1}, LSTM only (default otherwise).</param>
    /// <param name="wHh">[G, H] W_hh as PyTorch stores it (gate rows in PyTorch's order).</param>
    /// <param name="bHh">[G] b_hh; only a GRU reads it (b_hn = bHh[2H..3H]); Elman and LSTM fold it into x.</param>
    /// <param name="x">[B, G] the hoisted input term of this step (W_ih x_t + b_ih + the folded part of b_hh).</param>
    /// <param name="saved">[B, S], S = <see cref="CellShapes.SavedWidth"/>: GRU r, z, n, hn; LSTM i, f, g, o. Default for Elman.</param>
    /// <param name="h">[B, H] out h_t.</param>
    /// <param name="c">[B, H] out c_t, LSTM only.</param>
    /// <param name="lengths">[B] per-sequence lengths of a padded batch, or default: rows with lengths[b] ≤ step hold (h = hPrev, c = cPrev).</param>
    /// <param name="step">The time step t, compared with <paramref name="lengths"/>.</param>
    public void CellForward(CellKind cell, int batch, int hidden,
        ArrayView<float> hPrev, ArrayView<float> cPrev, ArrayView<float> wHh, ArrayView<float> bHh, ArrayView<float> x,
        ArrayView<float> saved, ArrayView<float> h, ArrayView<float> c,
        ArrayView<int> lengths = default, int step = 0)
    {
        var (gates, bh, bg) = CellSizes(cell, batch, hidden, wHh);
        RequireLength(hPrev, bh, nameof(hPrev));
        RequireLength(x, bg, nameof(x));
        RequireLength(h, bh, nameof(h));
        if (cell == CellKind.Gru)
            RequireLength(bHh, (long)gates * hidden, nameof(bHh));
        RequireLength(saved, batch * (long)CellShapes.SavedWidth(cell, hidden), nameof(saved));
        if (CellShapes.HasCellState(cell))
        {
            RequireLength(cPrev, bh, nameof(cPrev));
            RequireLength(c, bh, nameof(c));
        }
        var held = Held(lengths, batch, step);
        Count();
        // C = hPrev [B, H] · (W_hh [G, H])ᵀ: [B, G].
        var s = new GemmShape(batch, gates * hidden, hidden, transA: false, transB: true);
        switch (cell)
        {
            case CellKind.Elman:
                ElmanForward(s, hPrev, wHh, x, h, held);
                break;
            case CellKind.Gru:
                GruForward(s, hidden, hPrev, wHh, bHh, x, saved, h, held);
                break;
            case CellKind.Lstm:
                LstmForward(s, hidden, hPrev, cPrev, wHh, x, saved, h, c, held);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(cell), cell, "unknown cell kind");
        }
    }

    /// <summary>
    /// One backward time step of one layer of <paramref name="cell"/>, ONE launch, t from T − 1 down to 0:
    /// the GEMM <c>dAhNext·W_hh</c> [B, H] (the recurrent part of dh_t; K = 0 when there is no next step)
    /// fused with the gradients of all gates of each unit. dh_t = dH + dAhNext·W_hh (+ carryNext for a GRU);
    /// an LSTM's dc_t = dh_t ⊙ o ⊙ (1 − tanh² c_t) + carryNext. A held row (padded past its end) is the identity
    /// h_t = h_{t−1}, c_t = c_{t−1}: no pre-activation gradient, and the direct path passes carryNext on.
    /// </summary>
    /// <param name="cell">The cell kind.</param>
    /// <param name="batch">B.</param>
    /// <param name="hidden">H.</param>
    /// <param name="hasNext">Whether step t + 1 exists in this window; without it dAhNext is not read.</param>
    /// <param name="dAhNext">[B, G] hh-side pre-activation gradient of step t + 1. Must not alias <paramref name="dAh"/>.</param>
    /// <param name="wHh">[G, H] W_hh.</param>
    /// <param name="dH">[B, H] gradient into h_t from above (the layer above or a head).</param>
    /// <param name="carryNext">
    /// [B, H] direct-path gradient into h_t (GRU: z_{t+1} ⊙ dh_{t+1}) or c_t (LSTM: f_{t+1} ⊙ dc_{t+1}) from step t + 1,
    /// or, at the window's last step, one injected from outside it (an encoder's final c); read whenever it is a
    /// valid view, required when <paramref name="hasNext"/>, default for none. Elman: unused.
    /// </param>
    /// <param name="hPrev">[B, H] h_{t−1} (GRU).</param>
    /// <param name="h">[B, H] h_t (Elman: tanh' = 1 − h²).</param>
    /// <param name="cPrev">[B, H] c_{t−1} (LSTM).</param>
    /// <param name="c">[B, H] c_t (LSTM).</param>
    /// <param name="saved">[B, S] what the forward step t saved (GRU, LSTM).</param>
    /// <param name="dAx">[B, G] out: input-side pre-activation gradient (→ dW_ih, db_ih, dH of the layer below).</param>
    /// <param name="dAh">
    /// [B, G] out: hh-side pre-activation gradient (→ dW_hh, db_hh, the recurrent term of step t − 1). Elman and
    /// LSTM: equal to dAx; the kernel writes dAx only and the caller passes the same view. A GRU writes both
    /// (they differ in the n block: dAh_n = dAx_n ⊙ r), so they must not alias.
    /// </param>
    /// <param name="carry">[B, H] out: direct-path gradient for step t − 1 (GRU z_t ⊙ dh_t; LSTM f_t ⊙ dc_t). May be the same view as <paramref name="carryNext"/>. Elman: unused.</param>
    /// <param name="lengths">[B] per-sequence lengths, or default: rows with lengths[b] ≤ step get dAx = dAh = 0 and carry = carryNext (0 without).</param>
    /// <param name="step">The time step t.</param>
    public void CellBackward(CellKind cell, int batch, int hidden, bool hasNext,
        ArrayView<float> dAhNext, ArrayView<float> wHh, ArrayView<float> dH, ArrayView<float> carryNext,
        ArrayView<float> hPrev, ArrayView<float> h, ArrayView<float> cPrev, ArrayView<float> c, ArrayView<float> saved,
        ArrayView<float> dAx, ArrayView<float> dAh, ArrayView<float> carry,
        ArrayView<int> lengths = default, int step = 0)
    {
        var (gates, bh, bg) = CellSizes(cell, batch, hidden, wHh);
        if (hasNext)
            RequireLength(dAhNext, bg, nameof(dAhNext));
        RequireLength(dH, bh, nameof(dH));
        RequireLength(dAx, bg, nameof(dAx));
        switch (cell)
        {
            case CellKind.Elman:
                RequireLength(h, bh, nameof(h));
                break;
            case CellKind.Gru:
                RequireLength(hPrev, bh, nameof(hPrev));
                RequireLength(dAh, bg, nameof(dAh));
                break;
            case CellKind.Lstm:
                RequireLength(cPrev, bh, nameof(cPrev));
                RequireLength(c, bh, nameof(c));
                break;
        }
        bool carryIn = cell != CellKind.Elman && (hasNext || carryNext.IsValid);
        if (cell != CellKind.Elman)
        {
            if (carryIn)
                RequireLength(carryNext, bh, nameof(carryNext));
            RequireLength(saved, batch * (long)CellShapes.SavedWidth(cell, hidden), nameof(saved));
            RequireLength(carry, bh, nameof(carry));
        }
        var held = Held(lengths, batch, step);
        Count();
        // The recurrent part of dh_t: dAhNext [B, G] · W_hh [G, H] = [B, H]; nothing flows in past the window's end.
        var s = new GemmShape(batch, hidden, hasNext ? gates * hidden : 0, transA: false, transB: false);
        var a = hasNext ? dAhNext : dH; // K = 0 reads no element of A
        var next = carryIn ? carryNext : dH; // a stand-in when none flows in: not read
        switch (cell)
        {
            case CellKind.Elman:
                ElmanBackward(s, a, wHh, dH, h, dAx, held);
                break;
            case CellKind.Gru:
                GruBackward(s, a, wHh, carryIn, dH, next, hPrev, saved, dAx, dAh, carry, held);
                break;
            case CellKind.Lstm:
                LstmBackward(s, a, wHh, carryIn, dH, next, cPrev, c, saved, dAx, carry, held);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(cell), cell, "unknown cell kind");
        }
    }

    /// <summary>Checks a step's sizes and W_hh [G, H]; returns g, B·H and B·G.</summary>
    private static (int Gates, long Bh, long Bg) CellSizes(CellKind cell, int batch, int hidden, ArrayView<float> wHh)
    {
        int gates = CellShapes.Gates(cell);
        Require(batch > 0 && hidden > 0, $"cell step sizes must be positive (B={batch}, H={hidden}).");
        RequireLength(wHh, (long)gates * hidden * hidden, nameof(wHh));
        long bh = (long)batch * hidden;
        return (gates, bh, bh * gates);
    }

    /// <summary>The held rows of a launch: per-sequence lengths (which must cover the batch) or none.</summary>
    private HeldRows Held(ArrayView<int> lengths, int batch, int step)
    {
        if (!lengths.IsValid)
            return new HeldRows(noLengths.View, 0, step);
        Require(lengths.Length >= batch, $"lengths holds {lengths.Length} elements but {batch} are needed.");
        return new HeldRows(lengths, 1, step);
    }
}
