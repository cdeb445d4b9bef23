using ILGPU;
using ILGPU.Runtime;

namespace GpuRnn.Kernels;

/// <summary>
/// The views of one layer's whole window, handing out the epilogue of the per-step path for each step
/// (the same struct, on the per-step offsets), so the fused recurrence runs the cell math of
/// <see cref="DeviceKernels.CellForward"/>/<see cref="DeviceKernels.CellBackward"/> and no copy of it.
/// </summary>
internal interface IRecurrenceSteps<TEpilogue>
    where TEpilogue : struct, IGemmEpilogue
{
    /// <summary>The left operand of step <paramref name="step"/>'s recurrent product: h_{t−1} [B, H] (forward) or dAh_{t+1} [B, G] (backward).</summary>
    ArrayView<float> Operand(int step);

    /// <summary>The epilogue of step <paramref name="step"/>, exactly as the per-step launcher builds it.</summary>
    TEpilogue At(int step);
}

public sealed partial class DeviceKernels
{
    /// <summary>
    /// All <paramref name="steps"/> forward steps of one layer in ONE launch (DESIGN.md §9): rows of a batch
    /// never exchange data, so group g owns rows [g·R, g·R + R) and runs the time loop itself, with a group
    /// barrier between steps (it makes the group's writes of h_t visible to the group) and no grid barrier.
    /// Each step the group's threads take (row, unit) pairs of its rows in turn and compute the g gate
    /// pre-activations of the unit, <c>Σ_p h_{t−1}[i, p]·W_hh[u + c·H, p]</c>, summed in increasing p from 0 as
    /// the GEMM kernel does (so the results are the per-step path's), then hand them to the step's epilogue
    /// as the gate tiling does (register columns H apart).
    /// </summary>
    private static void FusedForwardKernel<TSteps, TEpilogue>(int batch, int hidden, int gates, int steps, int rowsPerGroup, ArrayView<float> wHh, TSteps seq)
        where TSteps : struct, IRecurrenceSteps<TEpilogue>
        where TEpilogue : struct, IGemmEpilogue
    {
        int row0 = Grid.IdxX * rowsPerGroup;
        int work = Math.Min(rowsPerGroup, batch - row0) * hidden;
        var s = new GemmShape(batch, gates * hidden, hidden, transA: false, transB: true);
        int last = gates * hidden - 1;
        for (int t = 0; t < steps; t++)
        {
            var a = seq.Operand(t);
            var e = seq.At(t);
            for (int w = Group.IdxX; w < work; w += Group.DimX)
            {
                int i = row0 + w / hidden, u = w % hidden;
                float v0 = 0f, v1 = 0f, v2 = 0f, v3 = 0f;
                if (gates == 1)
                {
                    for (int p = 0; p < hidden; p++)
                        v0 += s.A(a, i, p) * s.B(wHh, p, u);
                }
                else
                {
                    // Gate rows clamped like the GEMM's columns: a GRU's fourth column is computed, never used.
                    int j1 = u + hidden, j2 = u + 2 * hidden, j3 = Math.Min(u + 3 * hidden, last);
                    for (int p = 0; p < hidden; p++)
                    {
                        float av = s.A(a, i, p);
                        v0 += av * s.B(wHh, p, u);
                        v1 += av * s.B(wHh, p, j1);
                        v2 += av * s.B(wHh, p, j2);
                        v3 += av * s.B(wHh, p, j3);
                    }
                }
                e.ApplyRow(s, i, u, hidden, gates == 1 ? 1 : 4, v0, v1, v2, v3);
            }
            Group.Barrier();
        }
    }

    /// <summary>
    /// All <paramref name="steps"/> backward steps of one layer in ONE launch, t from steps − 1 down to 0, on the
    /// forward's row ownership: each step a (row, unit) pair gets <c>Σ_p dAh_{t+1}[i, p]·W_hh[p, u]</c> over the
    /// G gate rows (none at the window's last step), summed in increasing p as the GEMM kernel does, and the
    /// step's epilogue writes all gate gradients of the unit; a group barrier makes dAh_t and the carry visible
    /// to the group before step t − 1.
    /// </summary>
    private static void FusedBackwardKernel<TSteps, TEpilogue>(int batch, int hidden, int gates, int steps, int rowsPerGroup, ArrayView<float> wHh, TSteps seq)
        where TSteps : struct, IRecurrenceSteps<TEpilogue>
        where TEpilogue : struct, IGemmEpilogue
    {
        int row0 = Grid.IdxX * rowsPerGroup;
        int work = Math.Min(rowsPerGroup, batch - row0) * hidden;
        for (int t = steps - 1; t >= 0; t--)
        {
            var s = new GemmShape(batch, hidden, t + 1 < steps ? gates * hidden : 0, transA: false, transB: false);
            var a = seq.Operand(t);
            var e = seq.At(t);
            for (int w = Group.IdxX; w < work; w += Group.DimX)
            {
                int i = row0 + w / hidden, u = w % hidden;
                float dot = 0f;
                for (int p = 0; p < s.K; p++)
                    dot += s.A(a, i, p) * s.B(wHh, p, u);
                e.ApplyRow(s, i, u, hidden, 1, dot, 0f, 0f, 0f);
            }
            Group.Barrier();
        }
    }

    /// <summary>Loads the fused forward kernel for one cell's steps.</summary>
    private Action<KernelConfig, int, int, int, int, int, ArrayView<float>, TSteps> LoadFusedForward<TSteps, TEpilogue>()
        where TSteps : struct, IRecurrenceSteps<TEpilogue>
        where TEpilogue : struct, IGemmEpilogue =>
        Accelerator.LoadStreamKernel<int, int, int, int, int, ArrayView<float>, TSteps>(FusedForwardKernel<TSteps, TEpilogue>);

    /// <summary>Loads the fused backward kernel for one cell's steps.</summary>
    private Action<KernelConfig, int, int, int, int, int, ArrayView<float>, TSteps> LoadFusedBackward<TSteps, TEpilogue>()
        where TSteps : struct, IRecurrenceSteps<TEpilogue>
        where TEpilogue : struct, IGemmEpilogue =>
        Accelerator.LoadStreamKernel<int, int, int, int, int, ArrayView<float>, TSteps>(FusedBackwardKernel<TSteps, TEpilogue>);

    /// <summary>Batch rows one group of the fused recurrence owns (DESIGN.md §9; chosen per accelerator in the constructor).</summary>
    public int FusedRows { get; }

    /// <summary>Most threads of one group of the fused recurrence (fewer when its rows have fewer units; chosen per accelerator in the constructor).</summary>
    public int FusedThreads { get; }

    private void LaunchFused<TSteps>(Action<KernelConfig, int, int, int, int, int, ArrayView<float>, TSteps> kernel,
        int batch, int hidden, int gates, int steps, ArrayView<float> wHh, TSteps seq)
        where TSteps : struct
    {
        int threads = Math.Min(FusedThreads, (FusedRows * hidden + 31) / 32 * 32); // whole warps, no idle ones past the units
        var config = new KernelConfig(new Index1D(GemmTiling.DivUp(batch, FusedRows)), new Index1D(threads));
        kernel(config, batch, hidden, gates, steps, FusedRows, wHh, seq);
    }

    /// <summary>
    /// All <paramref name="steps"/> forward steps of one layer of <paramref name="cell"/>, ONE launch: what
    /// <paramref name="steps"/> calls of <see cref="CellForward"/> compute, step t reading h_t, c_t and writing
    /// h_{t+1}, c_{t+1} of the state blocks.
    /// </summary>
    /// <param name="cell">The cell kind.</param>
    /// <param name="batch">B.</param>
    /// <param name="hidden">H.</param>
    /// <param name="steps">T, the steps of the window.</param>
    /// <param name="hStates">[T + 1, B, H] h_0 … h_T; h_0 is read, the rest written.</param>
    /// <param name="cStates">[T + 1, B, H] c_0 … c_T, LSTM only (default otherwise).</param>
    /// <param name="wHh">[G, H] W_hh.</param>
    /// <param name="bHh">[G] b_hh (a GRU reads b_hn).</param>
    /// <param name="x">[T, B, G] the hoisted input term.</param>
    /// <param name="saved">[T, B, S] out: the saved activations (GRU, LSTM; default for Elman).</param>
    /// <param name="lengths">[B] per-sequence lengths of a padded batch, or default.</param>
    public void RecurrenceForward(CellKind cell, int batch, int hidden, int steps,
        ArrayView<float> hStates, ArrayView<float> cStates, ArrayView<float> wHh, ArrayView<float> bHh, ArrayView<float> x,
        ArrayView<float> saved, ArrayView<int> lengths = default)
    {
        var (gates, bh, bg) = CellSizes(cell, batch, hidden, wHh);
        Require(steps > 0, $"a recurrence needs at least one step ({steps}).");
        long bs = batch * (long)CellShapes.SavedWidth(cell, hidden);
        RequireLength(hStates, (steps + 1) * bh, nameof(hStates));
        RequireLength(x, steps * bg, nameof(x));
        if (cell == CellKind.Gru)
            RequireLength(bHh, (long)gates * hidden, nameof(bHh));
        if (cell != CellKind.Elman)
            RequireLength(saved, steps * bs, nameof(saved));
        if (CellShapes.HasCellState(cell))
            RequireLength(cStates, (steps + 1) * bh, nameof(cStates));
        var held = Held(lengths, batch, 0);
        Count();
        switch (cell)
        {
            case CellKind.Elman:
                LaunchFused(elmanFusedForward, batch, hidden, gates, steps, wHh, new ElmanForwardSteps(bh, hStates, x, held));
                break;
            case CellKind.Gru:
                LaunchFused(gruFusedForward, batch, hidden, gates, steps, wHh, new GruForwardSteps(hidden, bh, hStates, bHh, x, saved, held));
                break;
            case CellKind.Lstm:
                LaunchFused(lstmFusedForward, batch, hidden, gates, steps, wHh, new LstmForwardSteps(hidden, bh, hStates, cStates, x, saved, held));
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(cell), cell, "unknown cell kind");
        }
    }

    /// <summary>
    /// All <paramref name="steps"/> backward steps of one layer of <paramref name="cell"/>, ONE launch: what
    /// <see cref="CellBackward"/> computes for t = steps − 1 down to 0, with step t + 1's dAh and carry as its
    /// next ones and <paramref name="carryIn"/> the carry injected at the window's last step.
    /// </summary>
    /// <param name="cell">The cell kind.</param>
    /// <param name="batch">B.</param>
    /// <param name="hidden">H.</param>
    /// <param name="steps">T.</param>
    /// <param name="wHh">[G, H] W_hh.</param>
    /// <param name="dH">[T, B, H] gradient into each h_t from above.</param>
    /// <param name="carryIn">[B, H] direct-path gradient injected into the last step's state (an encoder's c), or default.</param>
    /// <param name="hStates">[T + 1, B, H] h_0 … h_T.</param>
    /// <param name="cStates">[T + 1, B, H] c_0 … c_T (LSTM).</param>
    /// <param name="saved">[T, B, S] the forward's saved activations (GRU, LSTM).</param>
    /// <param name="dAx">[T, B, G] out: input-side pre-activation gradients.</param>
    /// <param name="dAh">[T, B, G] out: hh-side ones (a GRU's own buffer; Elman and LSTM pass dAx).</param>
    /// <param name="carry">[B, H] out: the direct-path gradient into the initial state (GRU, LSTM; also the step-to-step carry).</param>
    /// <param name="lengths">[B] per-sequence lengths, or default.</param>
    public void RecurrenceBackward(CellKind cell, int batch, int hidden, int steps,
        ArrayView<float> wHh, ArrayView<float> dH, ArrayView<float> carryIn, ArrayView<float> hStates, ArrayView<float> cStates,
        ArrayView<float> saved, ArrayView<float> dAx, ArrayView<float> dAh, ArrayView<float> carry, ArrayView<int> lengths = default)
    {
        var (gates, bh, bg) = CellSizes(cell, batch, hidden, wHh);
        Require(steps > 0, $"a recurrence needs at least one step ({steps}).");
        long bs = batch * (long)CellShapes.SavedWidth(cell, hidden);
        RequireLength(dH, steps * bh, nameof(dH));
        RequireLength(hStates, (steps + 1) * bh, nameof(hStates));
        RequireLength(dAx, steps * bg, nameof(dAx));
        if (cell != CellKind.Elman)
        {
            RequireLength(saved, steps * bs, nameof(saved));
            RequireLength(carry, bh, nameof(carry));
            if (carryIn.IsValid)
                RequireLength(carryIn, bh, nameof(carryIn));
        }
        if (cell == CellKind.Gru)
            RequireLength(dAh, steps * bg, nameof(dAh));
        if (CellShapes.HasCellState(cell))
            RequireLength(cStates, (steps + 1) * bh, nameof(cStates));
        var held = Held(lengths, batch, 0);
        int hasCarryIn = carryIn.IsValid ? 1 : 0;
        var next = carryIn.IsValid ? carryIn : carry; // a stand-in when none flows in: not read
        Count();
        switch (cell)
        {
            case CellKind.Elman:
                LaunchFused(elmanFusedBackward, batch, hidden, gates, steps, wHh, new ElmanBackwardSteps(bh, steps, dH, hStates, dAx, held));
                break;
            case CellKind.Gru:
                LaunchFused(gruFusedBackward, batch, hidden, gates, steps, wHh,
                    new GruBackwardSteps(bh, steps, hasCarryIn, dH, next, hStates, saved, dAx, dAh, carry, held));
                break;
            case CellKind.Lstm:
                LaunchFused(lstmFusedBackward, batch, hidden, gates, steps, wHh,
                    new LstmBackwardSteps(bh, steps, hasCarryIn, dH, next, cStates, saved, dAx, carry, held));
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(cell), cell, "unknown cell kind");
        }
    }
}
