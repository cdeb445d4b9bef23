using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace GpuRnn.Kernels;

/// <summary>
/// Epilogue of the fused forward step of one Elman layer: <c>h_t = tanh(h_{t−1}·W_hhᵀ + X_t)</c>, where X_t
/// already holds <c>W_ih x_t + b_ih + b_hh</c> (hoisted out of the time loop). The inner product is the
/// GEMM kernel's; h_{t−1}, X_t, h_t are [B, H]; W_hh is [H, H] (out, in) as PyTorch stores it.
/// With <c>masked</c> ≠ 0, a sequence b whose length is ≤ <c>step</c> has ended: its state is held,
/// <c>h_t = h_{t−1}</c> (DESIGN.md §6).
/// </summary>
internal readonly struct RecurrentForwardEpilogue(ArrayView<float> hPrev, ArrayView<float> x, ArrayView<float> h, ArrayView<int> lengths, int masked, int step) : IGemmEpilogue
{
    private readonly ArrayView<float> hPrev = hPrev;
    private readonly ArrayView<float> x = x;
    private readonly ArrayView<float> h = h;
    private readonly ArrayView<int> lengths = lengths;
    private readonly int masked = masked;
    private readonly int step = step;

    public void Apply(GemmShape s, int i, int j, float dot)
    {
        long at = (long)i * s.N + j;
        h[at] = masked == 0 || step < lengths[i] ? XMath.Tanh(dot + x[at]) : hPrev[at];
    }
}

/// <summary>
/// Epilogue of the fused backward step of one layer: <c>dz_t = (dH_t + dz_{t+1}·W_hh) ⊙ (1 − h_t²)</c>.
/// dz_{t+1} is the pre-activation gradient of the next step (K = 0 at the last step: no gradient
/// flows in from beyond the window); dH_t comes from the layer above or the decoder. All [B, H]
/// except W_hh [H, H]. A held step (masked, past the sequence's end) has no pre-activation: dz = 0. Its
/// identity path h_t = h_{t−1} would carry dh_t back unchanged, but past the end of a right-padded
/// sequence nothing depends on the state but later held steps, so that gradient is zero as well.
/// </summary>
internal readonly struct RecurrentBackwardEpilogue(ArrayView<float> dH, ArrayView<float> h, ArrayView<float> dz, ArrayView<int> lengths, int masked, int step) : IGemmEpilogue
{
    private readonly ArrayView<float> dH = dH;
    private readonly ArrayView<float> h = h;
    private readonly ArrayView<float> dz = dz;
    private readonly ArrayView<int> lengths = lengths;
    private readonly int masked = masked;
    private readonly int step = step;

    public void Apply(GemmShape s, int i, int j, float dot)
    {
        long at = (long)i * s.N + j;
        float hv = h[at];
        dz[at] = masked == 0 || step < lengths[i] ? (dot + dH[at]) * (1f - hv * hv) : 0f;
    }
}

public sealed partial class DeviceKernels
{
    private Action<KernelConfig, GemmShape, int, int, ArrayView<float>, ArrayView<float>, RecurrentForwardEpilogue> recurrentForward = null!;
    private Action<KernelConfig, GemmShape, int, int, ArrayView<float>, ArrayView<float>, RecurrentBackwardEpilogue> recurrentBackward = null!;

    private void LoadRecurrent()
    {
        recurrentForward = Accelerator.LoadStreamKernel<GemmShape, int, int, ArrayView<float>, ArrayView<float>, RecurrentForwardEpilogue>(GemmTiledKernel);
        recurrentBackward = Accelerator.LoadStreamKernel<GemmShape, int, int, ArrayView<float>, ArrayView<float>, RecurrentBackwardEpilogue>(GemmTiledKernel);
    }

    /// <summary>
    /// <c>h = tanh(hPrev·W_hhᵀ + x)</c>: hPrev, x, h [B, H]; W_hh [H, H]. With <paramref name="lengths"/>
    /// [B] given, rows whose length is ≤ <paramref name="step"/> hold their state: h = hPrev.
    /// </summary>
    public void RecurrentForward(int batch, int hidden, ArrayView<float> hPrev, ArrayView<float> wHh, ArrayView<float> x, ArrayView<float> h,
        ArrayView<int> lengths = default, int step = 0)
    {
        Require(batch > 0 && hidden > 0, $"recurrent step sizes must be positive (B={batch}, H={hidden}).");
        long bh = (long)batch * hidden;
        RequireLength(hPrev, bh, nameof(hPrev));
        RequireLength(wHh, (long)hidden * hidden, nameof(wHh));
        RequireLength(x, bh, nameof(x));
        RequireLength(h, bh, nameof(h));
        Count();
        var s = new GemmShape(batch, hidden, hidden, transA: false, transB: true);
        var t = TilingFor(batch, hidden);
        int masked = MaskFlag(lengths, batch);
        recurrentForward(GemmConfig(t, batch, hidden), s, t.Micro, t.Depth, hPrev, wHh,
            new RecurrentForwardEpilogue(hPrev, x, h, masked != 0 ? lengths : noLengths.View, masked, step));
    }

    /// <summary>
    /// <c>dz = (dH + dzNext·W_hh) ⊙ (1 − h²)</c>: all [B, H] but W_hh [H, H]. With
    /// <paramref name="hasNext"/> false (the last step of a window) the recurrent term is zero and
    /// <paramref name="dzNext"/> is not read. With <paramref name="lengths"/> [B] given, rows whose
    /// length is ≤ <paramref name="step"/> (held states) get dz = 0.
    /// </summary>
    public void RecurrentBackward(int batch, int hidden, bool hasNext, ArrayView<float> dzNext, ArrayView<float> wHh, ArrayView<float> dH, ArrayView<float> h, ArrayView<float> dz,
        ArrayView<int> lengths = default, int step = 0)
    {
        Require(batch > 0 && hidden > 0, $"recurrent step sizes must be positive (B={batch}, H={hidden}).");
        long bh = (long)batch * hidden;
        if (hasNext)
            RequireLength(dzNext, bh, nameof(dzNext));
        RequireLength(wHh, (long)hidden * hidden, nameof(wHh));
        RequireLength(dH, bh, nameof(dH));
        RequireLength(h, bh, nameof(h));
        RequireLength(dz, bh, nameof(dz));
        Count();
        var s = new GemmShape(batch, hidden, hasNext ? hidden : 0, transA: false, transB: false);
        var t = TilingFor(batch, hidden);
        int masked = MaskFlag(lengths, batch);
        recurrentBackward(GemmConfig(t, batch, hidden), s, t.Micro, t.Depth, hasNext ? dzNext : dH, wHh,
            new RecurrentBackwardEpilogue(dH, h, dz, masked != 0 ? lengths : noLengths.View, masked, step));
    }

    /// <summary>1 when per-sequence lengths are given (they must cover the batch), else 0.</summary>
    private static int MaskFlag(ArrayView<int> lengths, int batch)
    {
        if (!lengths.IsValid)
            return 0;
        Require(lengths.Length >= batch, $"lengths holds {lengths.Length} elements but {batch} are needed.");
        return 1;
    }
}
