using ILGPU;
using ILGPU.Runtime;

namespace GpuRnn.Kernels;

/// <summary>
/// Epilogue of the fused forward step of one GRU layer (DESIGN.md §2, PyTorch's gate order [r; z; n]):
/// <c>r = σ(X_r + W_hr h'), z = σ(X_z + W_hz h'), hn = W_hn h' + b_hn, n = tanh(X_n + r ⊙ hn),
/// h = n + z ⊙ (h' − n)</c> (= (1 − z) ⊙ n + z ⊙ h', written as PyTorch evaluates it). X [B, 3H] is the
/// hoisted input term holding W_ih x + b_ih plus b_hr and b_hz, not b_hn, which sits inside r ⊙ (…).
/// Run on the gate tiling: one thread gets the three hh-side pre-activations of unit u of row i.
/// Saves r, z, n, hn in [B, 4H] for the backward step. A held row keeps h' and saves zeros.
/// </summary>
internal readonly struct GruForwardEpilogue(int hidden, ArrayView<float> hPrev, ArrayView<float> bHh, ArrayView<float> x,
    ArrayView<float> saved, ArrayView<float> h, HeldRows held) : IGemmEpilogue
{
    private readonly int hidden = hidden;
    private readonly ArrayView<float> hPrev = hPrev;
    private readonly ArrayView<float> bHh = bHh;
    private readonly ArrayView<float> x = x;
    private readonly ArrayView<float> saved = saved;
    private readonly ArrayView<float> h = h;
    private readonly HeldRows held = held;

    public void ApplyRow(GemmShape s, int i, int u, int stride, int count, float hr, float hz, float hhn, float unused)
    {
        long at = (long)i * hidden + u, xa = 3 * (long)i * hidden + u, sa = 4 * (long)i * hidden + u;
        if (held.Holds(i))
        {
            h[at] = hPrev[at];
            CellMath.Clear(saved, sa, hidden, 4);
            return;
        }
        float r = CellMath.Sigmoid(x[xa] + hr);
        float z = CellMath.Sigmoid(x[xa + hidden] + hz);
        float hn = hhn + bHh[2 * hidden + u];
        float n = CellMath.Tanh(x[xa + 2 * hidden] + r * hn);
        float hp = hPrev[at];
        h[at] = n + z * (hp - n);
        saved[sa] = r;
        saved[sa + hidden] = z;
        saved[sa + 2 * hidden] = n;
        saved[sa + 3 * hidden] = hn;
    }
}

/// <summary>
/// Epilogue of the fused backward step of one GRU layer, per unit u of row i, from
/// <c>dh = dH + dAhNext·W_hh + carryNext</c> (the GEMM's dot is the middle term):
/// <c>dn = dh ⊙ (1 − z)</c>, <c>dz = dh ⊙ (h' − n)</c>, direct path <c>carry = dh ⊙ z</c> into h';
/// pre-activations <c>dA_n = dn ⊙ (1 − n²)</c> (input side), <c>dA_r = dA_n ⊙ hn ⊙ r(1 − r)</c>,
/// <c>dA_z = dz ⊙ z(1 − z)</c>; the hh side differs only in n: <c>dAh_n = dA_n ⊙ r</c> (the gradient of
/// W_hn h' + b_hn). Without a carry in (hasCarry = 0: the window's last step, nothing injected) carryNext is not
/// read. Held rows get zero pre-activation gradients and pass carryNext on as their carry (h_t = h_{t−1}).
/// </summary>
internal readonly struct GruBackwardEpilogue(int hasCarry, ArrayView<float> dH, ArrayView<float> carryNext, ArrayView<float> hPrev, ArrayView<float> saved,
    ArrayView<float> dAx, ArrayView<float> dAh, ArrayView<float> carry, HeldRows held) : IGemmEpilogue, IGemmElementEpilogue
{
    private readonly int hasCarry = hasCarry;
    private readonly ArrayView<float> dH = dH;
    private readonly ArrayView<float> carryNext = carryNext;
    private readonly ArrayView<float> hPrev = hPrev;
    private readonly ArrayView<float> saved = saved;
    private readonly ArrayView<float> dAx = dAx;
    private readonly ArrayView<float> dAh = dAh;
    private readonly ArrayView<float> carry = carry;
    private readonly HeldRows held = held;

    public void ApplyRow(GemmShape s, int i, int j, int stride, int count, float v0, float v1, float v2, float v3) =>
        GemmRows.Elementwise(this, s, i, j, stride, count, v0, v1, v2, v3);

    public void Apply(GemmShape s, int i, int u, float dot)
    {
        int units = s.N; // H: the backward GEMM gives [B, H]
        long at = (long)i * units + u, ga = 3 * (long)i * units + u, sa = 4 * (long)i * units + u;
        if (held.Holds(i))
        {
            CellMath.Clear(dAx, ga, units, 3);
            CellMath.Clear(dAh, ga, units, 3);
            carry[at] = hasCarry != 0 ? carryNext[at] : 0f; // held: the identity passes the direct path on
            return;
        }
        float dh = dH[at] + dot;
        if (hasCarry != 0)
            dh += carryNext[at];
        float r = saved[sa], z = saved[sa + units], n = saved[sa + 2 * units], hn = saved[sa + 3 * units];
        float dan = dh * (1f - z) * (1f - n * n);
        float dar = dan * hn * r * (1f - r);
        float daz = dh * (hPrev[at] - n) * z * (1f - z);
        dAx[ga] = dar;
        dAx[ga + units] = daz;
        dAx[ga + 2 * units] = dan;
        dAh[ga] = dar;
        dAh[ga + units] = daz;
        dAh[ga + 2 * units] = dan * r;
        carry[at] = dh * z;
    }
}

public sealed partial class DeviceKernels
{
    private Action<KernelConfig, GemmShape, int, int, int, ArrayView<float>, ArrayView<float>, GruForwardEpilogue> gruForward = null!;
    private Action<KernelConfig, GemmShape, int, int, int, ArrayView<float>, ArrayView<float>, GruBackwardEpilogue> gruBackward = null!;

    private Action<KernelConfig, int, int, int, int, int, ArrayView<float>, GruForwardSteps> gruFusedForward = null!;
    private Action<KernelConfig, int, int, int, int, int, ArrayView<float>, GruBackwardSteps> gruFusedBackward = null!;

    private void LoadGru()
    {
        gruForward = LoadGemmKernel<GruForwardEpilogue>();
        gruBackward = LoadGemmKernel<GruBackwardEpilogue>();
        gruFusedForward = LoadFusedForward<GruForwardSteps, GruForwardEpilogue>();
        gruFusedBackward = LoadFusedBackward<GruBackwardSteps, GruBackwardEpilogue>();
    }

    /// <summary>GRU forward step, s = hPrev [B, H] · W_hhᵀ → [B, 3H] on the gate tiling.</summary>
    private void GruForward(GemmShape s, int hidden, ArrayView<float> hPrev, ArrayView<float> wHh, ArrayView<float> bHh, ArrayView<float> x,
        ArrayView<float> saved, ArrayView<float> h, HeldRows held) =>
        LaunchGated(gruForward, s, hidden, hPrev, wHh, new GruForwardEpilogue(hidden, hPrev, bHh, x, saved, h, held));

    /// <summary>GRU backward step, s = dAhNext [B, 3H] · W_hh → [B, H] (K = 0 without a next step).</summary>
    private void GruBackward(GemmShape s, ArrayView<float> a, ArrayView<float> wHh, bool hasCarry, ArrayView<float> dH, ArrayView<float> carryNext,
        ArrayView<float> hPrev, ArrayView<float> saved, ArrayView<float> dAx, ArrayView<float> dAh, ArrayView<float> carry, HeldRows held) =>
        LaunchGemm(gruBackward, s, a, wHh, new GruBackwardEpilogue(hasCarry ? 1 : 0, dH, carryNext, hPrev, saved, dAx, dAh, carry, held));
}

/// <summary>The GRU forward steps of a window for the fused recurrence: step t's <see cref="GruForwardEpilogue"/> on h_t → h_{t+1}.</summary>
internal readonly struct GruForwardSteps(int hidden, long bh, ArrayView<float> hStates, ArrayView<float> bHh, ArrayView<float> x, ArrayView<float> saved, HeldRows held)
    : IRecurrenceSteps<GruForwardEpilogue>
{
    private readonly int hidden = hidden;
    private readonly long bh = bh;
    private readonly ArrayView<float> hStates = hStates;
    private readonly ArrayView<float> bHh = bHh;
    private readonly ArrayView<float> x = x;
    private readonly ArrayView<float> saved = saved;
    private readonly HeldRows held = held;

    public ArrayView<float> Operand(int step) => hStates.SubView(step * bh, bh);

    public GruForwardEpilogue At(int step) =>
        new(hidden, hStates.SubView(step * bh, bh), bHh, x.SubView(3 * step * bh, 3 * bh), saved.SubView(4 * step * bh, 4 * bh),
            hStates.SubView((step + 1) * bh, bh), held.At(step));
}

/// <summary>
/// The GRU backward steps of a window for the fused recurrence: step t's <see cref="GruBackwardEpilogue"/>, with step t + 1's dAh as
/// its operand and the carry buffer as its carry in (at the last step: the injected one, if any).
/// </summary>
internal readonly struct GruBackwardSteps(long bh, int steps, int hasCarryIn, ArrayView<float> dH, ArrayView<float> carryIn, ArrayView<float> hStates,
    ArrayView<float> saved, ArrayView<float> dAx, ArrayView<float> dAh, ArrayView<float> carry, HeldRows held) : IRecurrenceSteps<GruBackwardEpilogue>
{
    private readonly long bh = bh;
    private readonly int steps = steps;
    private readonly int hasCarryIn = hasCarryIn;
    private readonly ArrayView<float> dH = dH;
    private readonly ArrayView<float> carryIn = carryIn;
    private readonly ArrayView<float> hStates = hStates;
    private readonly ArrayView<float> saved = saved;
    private readonly ArrayView<float> dAx = dAx;
    private readonly ArrayView<float> dAh = dAh;
    private readonly ArrayView<float> carry = carry;
    private readonly HeldRows held = held;

    public ArrayView<float> Operand(int step) => dAh.SubView(3 * (step + 1 < steps ? step + 1 : 0) * bh, 3 * bh); // the last step reads none (K = 0)

    public GruBackwardEpilogue At(int step)
    {
        bool hasNext = step + 1 < steps;
        return new(hasNext ? 1 : hasCarryIn, dH.SubView(step * bh, bh), hasNext ? carry : carryIn, hStates.SubView(step * bh, bh),
            saved.SubView(4 * step * bh, 4 * bh), dAx.SubView(3 * step * bh, 3 * bh), dAh.SubView(3 * step * bh, 3 * bh), carry, held.At(step));
    }
}
