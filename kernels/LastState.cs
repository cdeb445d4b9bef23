using ILGPU;
using ILGPU.Runtime;

namespace GpuRnn.Kernels;

public sealed partial class DeviceKernels
{
    // Many-to-one forward: the last true hidden state of each sequence of a right-padded batch, hLast[b, :] =
    // H[rows[b], :] with rows[b] = (length_b − 1)·B + b, is a row gather (GatherRowsKernel, Reverse.cs; see
    // LastStateForward). Because padding only follows a sequence's end and adds no loss, reading the state at the
    // true last step is the same as holding the state past the end.

    /// <summary>
    /// Its gradient: <c>dH[rows[b], :] = dLast[b, :]</c>, every other row of dH zero, or, when
    /// <paramref name="accumulate"/> is 1, dLast added to what dH holds at those rows and the rest kept (a layer's own
    /// final-state gradient under what the layer above or attention already gave its outputs). Thread per
    /// (p, h) of dH, so each element is written exactly once (no atomics): the row looks up whether
    /// it is some sequence's last (rows are distinct: one per sequence). dLast may be a column block of
    /// a wider matrix (a bidirectional classifier's [B, 2H]): rows <paramref name="lastStride"/> apart from column <paramref name="lastColumn"/>.
    /// </summary>
    private static void LastStateBackwardKernel(Index1D index, int hidden, int batch, int accumulate, ArrayView<int> rows, ArrayView<float> dLast, int lastStride, int lastColumn, ArrayView<float> dStates)
    {
        int p = index / hidden;
        int h = index - p * hidden;
        int b = p % batch; // time-major: row p belongs to sequence p mod B
        float injected = rows[b] == p ? dLast[(long)b * lastStride + lastColumn + h] : 0f;
        dStates[index] = accumulate != 0 ? dStates[index] + injected : injected;
    }

    private Action<AcceleratorStream, Index1D, int, int, int, ArrayView<int>, ArrayView<float>, int, int, ArrayView<float>> lastStateBackward = null!;

    private void LoadLastState()
    {
        lastStateBackward = Accelerator.LoadAutoGroupedKernel<Index1D, int, int, int, ArrayView<int>, ArrayView<float>, int, int, ArrayView<float>>(LastStateBackwardKernel);
    }

    /// <summary><c>last[b] = states[rows[b]]</c>: rows [B] (time-major row of each sequence's last step), states [P, H], last [B, H].</summary>
    public void LastStateForward(int batch, int hidden, ArrayView<int> rows, ArrayView<float> states, ArrayView<float> last) =>
        LastStateForward(batch, hidden, rows, states, accumulate: false, new RowBlock(last, hidden, 0));

    /// <summary>
    /// <c>last[b] (+)= states[rows[b]]</c> into a column block of <paramref name="last"/> (a bidirectional classifier's [B, 2H]
    /// side by side, or added: a bidirectional encoder's summed final states). One launch of the row gather.
    /// </summary>
    public void LastStateForward(int batch, int hidden, ArrayView<int> rows, ArrayView<float> states, bool accumulate, RowBlock last)
    {
        Require(rows.IsValid && rows.Length >= batch, $"rows holds {rows.Length} elements but {batch} are needed.");
        GatherRows(batch, hidden, rows, new RowBlock(states, hidden, 0), accumulate, last);
    }

    /// <summary>
    /// <c>dStates = 0</c> except <c>dStates[rows[b]] = dLast[b]</c> (or, with <paramref name="accumulate"/>, dLast added
    /// at those rows and the rest kept): dStates [P, H] with P a multiple of B, dLast [B, H].
    /// </summary>
    public void LastStateBackward(int positions, int batch, int hidden, ArrayView<int> rows, ArrayView<float> dLast, ArrayView<float> dStates, bool accumulate = false) =>
        LastStateBackward(positions, batch, hidden, rows, new RowBlock(dLast, hidden, 0), dStates, accumulate);

    /// <summary>As the other overload, with dLast a column block [B, H] of a wider matrix (a bidirectional classifier's [B, 2H]).</summary>
    public void LastStateBackward(int positions, int batch, int hidden, ArrayView<int> rows, RowBlock dLast, ArrayView<float> dStates, bool accumulate = false)
    {
        Require(positions > 0 && batch > 0 && hidden > 0 && positions % batch == 0, $"last-state sizes must be positive with P a multiple of B (P={positions}, B={batch}, H={hidden}).");
        Require(rows.Length >= batch, $"rows holds {rows.Length} elements but {batch} are needed.");
        RequireBlock(dLast, batch, hidden, nameof(dLast));
        RequireLength(dStates, (long)positions * hidden, nameof(dStates));
        Count();
        lastStateBackward(Accelerator.DefaultStream, positions * hidden, hidden, batch, accumulate ? 1 : 0, rows, dLast.View, dLast.Stride, dLast.Column, dStates);
    }
}
