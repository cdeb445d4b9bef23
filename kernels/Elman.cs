using ILGPU;
using ILGPU.Runtime;

namespace GpuRnn.Kernels;

/// <summary>
/// Epilogue of the fused forward step of one Elman layer: <c>h_t = tanh(h_{t−1}·W_hhᵀ + X_t)</c>, where X_t
/// already holds <c>W_ih x_t + b_ih + b_hh</c> (hoisted out of the time loop). The inner product is the
/// GEMM kernel's; h_{t−1}, X_t, h_t are [B, H]; W_hh is [H, H] (out, in) as PyTorch stores it.
/// A held row (a padded sequence past its end) keeps its state: <c>h_t = h_{t−1}</c> (DESIGN.md §6).
/// </summary>
internal readonly struct ElmanForwardEpilogue(ArrayView<float> hPrev, ArrayView<float> x, ArrayView<float> h, HeldRows held)
    : IGemmEpilogue, IGemmElementEpilogue
{
    private readonly ArrayView<float> hPrev = hPrev;
    private readonly ArrayView<float> x = x;
    private readonly ArrayView<float> h = h;
    private readonly HeldRows held = held;

    public void ApplyRow(GemmShape s, int i, int j, int stride, int count, float v0, float v1, float v2, float v3) =>
        GemmRows.Elementwise(this, s, i, j, stride, count, v0, v1, v2, v3);

    public void Apply(GemmShape s, int i, int j, float dot)
    {
        long at = (long)i * s.N + j;
        h[at] = held.Holds(i) ? hPrev[at] : CellMath.Tanh(dot + x[at]);
    }
}

/// <summary>
/// Epilogue of the fused backward step of one Elman layer: <c>dz_t = (dH_t + dz_{t+1}·W_hh) ⊙ (1 − h_t²)</c>.
/// dz_{t+1} is the pre-activation gradient of the next step (K = 0 at the last step: no gradient
/// flows in from beyond the window); dH_t comes from the layer above or the decoder. All [B, H]
/// except W_hh [H, H]. A held step (past the sequence's end) has no pre-activation: dz = 0. Its
/// identity path h_t = h_{t−1} would carry dh_t back unchanged, but past the end of a right-padded
/// sequence nothing depends on the state but later held steps, so that gradient is zero as well.
/// dz is both dAx and dAh of <see cref="DeviceKernels.CellBackward"/>.
/// </summary>
internal readonly struct ElmanBackwardEpilogue(ArrayView<float> dH, ArrayView<float> h, ArrayView<float> dz, HeldRows held)
    : IGemmEpilogue, IGemmElementEpilogue
{
    private readonly ArrayView<float> dH = dH;
    private readonly ArrayView<float> h = h;
    private readonly ArrayView<float> dz = dz;
    private readonly HeldRows held = held;

    public void ApplyRow(GemmShape s, int i, int j, int stride, int count, float v0, float v1, float v2, float v3) =>
        GemmRows.Elementwise(this, s, i, j, stride, count, v0, v1, v2, v3);

    public void Apply(GemmShape s, int i, int j, float dot)
    {
        long at = (long)i * s.N + j;
        float hv = h[at];
        dz[at] = held.Holds(i) ? 0f : (dot + dH[at]) * (1f - hv * hv);
    }
}

public sealed partial class DeviceKernels
{
    private Action<KernelConfig, GemmShape, int, int, int, ArrayView<float>, ArrayView<float>, ElmanForwardEpilogue> elmanForward = null!;
    private Action<KernelConfig, GemmShape, int, int, int, ArrayView<float>, ArrayView<float>, ElmanBackwardEpilogue> elmanBackward = null!;

    private Action<KernelConfig, int, int, int, int, int, ArrayView<float>, ElmanForwardSteps> elmanFusedForward = null!;
    private Action<KernelConfig, int, int, int, int, int, ArrayView<float>, ElmanBackwardSteps> elmanFusedBackward = null!;

    private void LoadElman()
    {
        elmanForward = LoadGemmKernel<ElmanForwardEpilogue>();
        elmanBackward = LoadGemmKernel<ElmanBackwardEpilogue>();
        elmanFusedForward = LoadFusedForward<ElmanForwardSteps, ElmanForwardEpilogue>();
        elmanFusedBackward = LoadFusedBackward<ElmanBackwardSteps, ElmanBackwardEpilogue>();
    }

    /// <summary>Elman forward step, s = hPrev [B, H] · W_hhᵀ (one gate: each output is its own unit, so the plain tiling serves).</summary>
    private void ElmanForward(GemmShape s, ArrayView<float> hPrev, ArrayView<float> wHh, ArrayView<float> x, ArrayView<float> h, HeldRows held) =>
        LaunchGemm(elmanForward, s, hPrev, wHh, new ElmanForwardEpilogue(hPrev, x, h, held));

    /// <summary>Elman backward step, s = dzNext [B, H] · W_hh (K = 0 without a next step).</summary>
    private void ElmanBackward(GemmShape s, ArrayView<float> a, ArrayView<float> wHh, ArrayView<float> dH, ArrayView<float> h, ArrayView<float> dz, HeldRows held) =>
        LaunchGemm(elmanBackward, s, a, wHh, new ElmanBackwardEpilogue(dH, h, dz, held));
}

/// <summary>The Elman forward steps of a window for the fused recurrence: step t's <see cref="ElmanForwardEpilogue"/> on h_t → h_{t+1}.</summary>
internal readonly struct ElmanForwardSteps(long bh, ArrayView<float> hStates, ArrayView<float> x, HeldRows held) : IRecurrenceSteps<ElmanForwardEpilogue>
{
    private readonly long bh = bh;
    private readonly ArrayView<float> hStates = hStates;
    private readonly ArrayView<float> x = x;
    private readonly HeldRows held = held;

    public ArrayView<float> Operand(int step) => hStates.SubView(step * bh, bh);

    public ElmanForwardEpilogue At(int step) =>
        new(hStates.SubView(step * bh, bh), x.SubView(step * bh, bh), hStates.SubView((step + 1) * bh, bh), held.At(step));
}

/// <summary>The Elman backward steps of a window for the fused recurrence: step t's <see cref="ElmanBackwardEpilogue"/>, dz_{t+1} its operand.</summary>
internal readonly struct ElmanBackwardSteps(long bh, int steps, ArrayView<float> dH, ArrayView<float> hStates, ArrayView<float> dz, HeldRows held)
    : IRecurrenceSteps<ElmanBackwardEpilogue>
{
    private readonly long bh = bh;
    private readonly int steps = steps;
    private readonly ArrayView<float> dH = dH;
    private readonly ArrayView<float> hStates = hStates;
    private readonly ArrayView<float> dz = dz;
    private readonly HeldRows held = held;

    public ArrayView<float> Operand(int step) => dz.SubView((step + 1 < steps ? step + 1 : 0) * bh, bh); // the last step reads none (K = 0)

    public ElmanBackwardEpilogue At(int step) =>
        new(dH.SubView(step * bh, bh), hStates.SubView((step + 1) * bh, bh), dz.SubView(step * bh, bh), held.At(step));
}
