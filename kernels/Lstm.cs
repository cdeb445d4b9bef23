using ILGPU;
using ILGPU.Runtime;

namespace GpuRnn.Kernels;

/// <summary>
/// Epilogue of the fused forward step of one LSTM layer (DESIGN.md §2, PyTorch's gate order [i; f; g; o]):
/// <c>i, f, g, o = σ, σ, tanh, σ of (X + W_hh h')</c>, <c>c = f ⊙ c' + i ⊙ g</c>, <c>h = o ⊙ tanh(c)</c>.
/// X [B, 4H] is the hoisted input term with both biases folded in. Run on the gate tiling: one thread gets
/// the four hh-side pre-activations of unit u of row i. Saves i, f, g, o in [B, 4H] for the backward
/// step. A held row keeps h' and c' and saves zeros.
/// </summary>
internal readonly struct LstmForwardEpilogue(int hidden, ArrayView<float> hPrev, ArrayView<float> cPrev, ArrayView<float> x,
    ArrayView<float> saved, ArrayView<float> h, ArrayView<float> c, HeldRows held) : IGemmEpilogue
{
    private readonly int hidden = hidden;
    private readonly ArrayView<float> hPrev = hPrev;
    private readonly ArrayView<float> cPrev = cPrev;
    private readonly ArrayView<float> x = x;
    private readonly ArrayView<float> saved = saved;
    private readonly ArrayView<float> h = h;
    private readonly ArrayView<float> c = c;
    private readonly HeldRows held = held;

    public void ApplyRow(GemmShape s, int i, int u, int stride, int count, float hi, float hf, float hg, float ho)
    {
        long at = (long)i * hidden + u, ga = 4 * (long)i * hidden + u;
        if (held.Holds(i))
        {
            h[at] = hPrev[at];
            c[at] = cPrev[at];
            CellMath.Clear(saved, ga, hidden, 4);
            return;
        }
        float ig = CellMath.Sigmoid(x[ga] + hi);
        float fg = CellMath.Sigmoid(x[ga + hidden] + hf);
        float gg = CellMath.Tanh(x[ga + 2 * hidden] + hg);
        float og = CellMath.Sigmoid(x[ga + 3 * hidden] + ho);
        float cv = fg * cPrev[at] + ig * gg;
        c[at] = cv;
        h[at] = og * CellMath.Tanh(cv);
        saved[ga] = ig;
        saved[ga + hidden] = fg;
        saved[ga + 2 * hidden] = gg;
        saved[ga + 3 * hidden] = og;
    }
}

/// <summary>
/// Epilogue of the fused backward step of one LSTM layer, per unit u of row i, from
/// <c>dh = dH + dAhNext·W_hh</c> (the GEMM's dot is the second term):
/// <c>dc = dh ⊙ o ⊙ (1 − tanh² c) + carryNext</c>, <c>do = dh ⊙ tanh c</c>, <c>di = dc ⊙ g</c>,
/// <c>df = dc ⊙ c'</c>, <c>dg = dc ⊙ i</c>, direct path <c>carry = dc ⊙ f</c> into c'; the pre-activation
/// gradients multiply by σ' = σ(1 − σ) and tanh' = 1 − g². Both sides of the gates share them (dAh = dAx).
/// Without a carry in (hasCarry = 0) carryNext is not read. Held rows get zero pre-activation gradients and
/// pass carryNext on as their carry (c_t = c_{t−1}).
/// </summary>
internal readonly struct LstmBackwardEpilogue(int hasCarry, ArrayView<float> dH, ArrayView<float> carryNext, ArrayView<float> cPrev, ArrayView<float> c,
    ArrayView<float> saved, ArrayView<float> dA, ArrayView<float> carry, HeldRows held) : IGemmEpilogue, IGemmElementEpilogue
{
    private readonly int hasCarry = hasCarry;
    private readonly ArrayView<float> dH = dH;
    private readonly ArrayView<float> carryNext = carryNext;
    private readonly ArrayView<float> cPrev = cPrev;
    private readonly ArrayView<float> c = c;
    private readonly ArrayView<float> saved = saved;
    private readonly ArrayView<float> dA = dA;
    private readonly ArrayView<float> carry = carry;
    private readonly HeldRows held = held;

    public void ApplyRow(GemmShape s, int i, int j, int stride, int count, float v0, float v1, float v2, float v3) =>
        GemmRows.Elementwise(this, s, i, j, stride, count, v0, v1, v2, v3);

    public void Apply(GemmShape s, int i, int u, float dot)
    {
        int units = s.N; // H: the backward GEMM gives [B, H]
        long at = (long)i * units + u, ga = 4 * (long)i * units + u;
        if (held.Holds(i))
        {
            CellMath.Clear(dA, ga, units, 4);
            carry[at] = hasCarry != 0 ? carryNext[at] : 0f; // held: the identity passes the direct path on
            return;
        }
        float dh = dH[at] + dot;
        float ig = saved[ga], fg = saved[ga + units], gg = saved[ga + 2 * units], og = saved[ga + 3 * units];
        float tc = CellMath.Tanh(c[at]);
        float dc = dh * og * (1f - tc * tc);
        if (hasCarry != 0)
            dc += carryNext[at];
        dA[ga] = dc * gg * ig * (1f - ig);
        dA[ga + units] = dc * cPrev[at] * fg * (1f - fg);
        dA[ga + 2 * units] = dc * ig * (1f - gg * gg);
        dA[ga + 3 * units] = dh * tc * og * (1f - og);
        carry[at] = dc * fg;
    }
}

public sealed partial class DeviceKernels
{
    private Action<KernelConfig, GemmShape, int, int, int, ArrayView<float>, ArrayView<float>, LstmForwardEpilogue> lstmForward = null!;
    private Action<KernelConfig, GemmShape, int, int, int, ArrayView<float>, ArrayView<float>, LstmBackwardEpilogue> lstmBackward = null!;

    private Action<KernelConfig, int, int, int, int, int, ArrayView<float>, LstmForwardSteps> lstmFusedForward = null!;
    private Action<KernelConfig, int, int, int, int, int, ArrayView<float>, LstmBackwardSteps> lstmFusedBackward = null!;

    private void LoadLstm()
    {
        lstmForward = LoadGemmKernel<LstmForwardEpilogue>();
        lstmBackward = LoadGemmKernel<LstmBackwardEpilogue>();
        lstmFusedForward = LoadFusedForward<LstmForwardSteps, LstmForwardEpilogue>();
        lstmFusedBackward = LoadFusedBackward<LstmBackwardSteps, LstmBackwardEpilogue>();
    }

    /// <summary>LSTM forward step, s = hPrev [B, H] · W_hhᵀ → [B, 4H] on the gate tiling.</summary>
    private void LstmForward(GemmShape s, int hidden, ArrayView<float> hPrev, ArrayView<float> cPrev, ArrayView<float> wHh, ArrayView<float> x,
        ArrayView<float> saved, ArrayView<float> h, ArrayView<float> c, HeldRows held) =>
        LaunchGated(lstmForward, s, hidden, hPrev, wHh, new LstmForwardEpilogue(hidden, hPrev, cPrev, x, saved, h, c, held));

    /// <summary>LSTM backward step, s = dAhNext [B, 4H] · W_hh → [B, H] (K = 0 without a next step); writes dAx only (dAh = dAx).</summary>
    private void LstmBackward(GemmShape s, ArrayView<float> a, ArrayView<float> wHh, bool hasCarry, ArrayView<float> dH, ArrayView<float> carryNext,
        ArrayView<float> cPrev, ArrayView<float> c, ArrayView<float> saved, ArrayView<float> dAx, ArrayView<float> carry, HeldRows held) =>
        LaunchGemm(lstmBackward, s, a, wHh, new LstmBackwardEpilogue(hasCarry ? 1 : 0, dH, carryNext, cPrev, c, saved, dAx, carry, held));
}

/// <summary>The LSTM forward steps of a window for the fused recurrence: step t's <see cref="LstmForwardEpilogue"/> on (h_t, c_t) → (h_{t+1}, c_{t+1}).</summary>
internal readonly struct LstmForwardSteps(int hidden, long bh, ArrayView<float> hStates, ArrayView<float> cStates, ArrayView<float> x, ArrayView<float> saved, HeldRows held)
    : IRecurrenceSteps<LstmForwardEpilogue>
{
    private readonly int hidden = hidden;
    private readonly long bh = bh;
    private readonly ArrayView<float> hStates = hStates;
    private readonly ArrayView<float> cStates = cStates;
    private readonly ArrayView<float> x = x;
    private readonly ArrayView<float> saved = saved;
    private readonly HeldRows held = held;

    public ArrayView<float> Operand(int step) => hStates.SubView(step * bh, bh);

    public LstmForwardEpilogue At(int step) =>
        new(hidden, hStates.SubView(step * bh, bh), cStates.SubView(step * bh, bh), x.SubView(4 * step * bh, 4 * bh), saved.SubView(4 * step * bh, 4 * bh),
            hStates.SubView((step + 1) * bh, bh), cStates.SubView((step + 1) * bh, bh), held.At(step));
}

/// <summary>
/// The LSTM backward steps of a window for the fused recurrence: step t's <see cref="LstmBackwardEpilogue"/>, with step t + 1's dA as
/// its operand and the carry buffer as its carry in (at the last step: the injected one, if any).
/// </summary>
internal readonly struct LstmBackwardSteps(long bh, int steps, int hasCarryIn, ArrayView<float> dH, ArrayView<float> carryIn, ArrayView<float> cStates,
    ArrayView<float> saved, ArrayView<float> dA, ArrayView<float> carry, HeldRows held) : IRecurrenceSteps<LstmBackwardEpilogue>
{
    private readonly long bh = bh;
    private readonly int steps = steps;
    private readonly int hasCarryIn = hasCarryIn;
    private readonly ArrayView<float> dH = dH;
    private readonly ArrayView<float> carryIn = carryIn;
    private readonly ArrayView<float> cStates = cStates;
    private readonly ArrayView<float> saved = saved;
    private readonly ArrayView<float> dA = dA;
    private readonly ArrayView<float> carry = carry;
    private readonly HeldRows held = held;

    public ArrayView<float> Operand(int step) => dA.SubView(4 * (step + 1 < steps ? step + 1 : 0) * bh, 4 * bh); // the last step reads none (K = 0)

    public LstmBackwardEpilogue At(int step)
    {
        bool hasNext = step + 1 < steps;
        return new(hasNext ? 1 : hasCarryIn, dH.SubView(step * bh, bh), hasNext ? carry : carryIn, cStates.SubView(step * bh, bh),
            cStates.SubView((step + 1) * bh, bh), saved.SubView(4 * step * bh, 4 * bh), dA.SubView(4 * step * bh, 4 * bh), carry, held.At(step));
    }
}
