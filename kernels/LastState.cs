using ILGPU;
using ILGPU.Runtime;

namespace GpuRnn.Kernels;

public sealed partial class DeviceKernels
{
    /// <summary>
    /// Many-to-one forward: the last true hidden state of each sequence of a right-padded batch,
    /// <c>hLast[b, :] = H[rows[b], :]</c> with rows[b] = (length_b − 1)·B + b. Because padding only
    /// follows a sequence's end and adds no loss, reading the state at the true last step is the same
    /// as holding the state past the end. Thread per (b, h); H is [P, H], hLast [B, H].
    /// </summary>
    private static void LastStateForwardKernel(Index1D index, int hidden, ArrayView<int> rows, ArrayView<float> states, ArrayView<float> last)
    {
        int b = index / hidden;
        int h = index - b * hidden;
        last[index] = states[(long)rows[b] * hidden + h];
    }

    /// <summary>
    /// Its gradient: <c>dH[rows[b], :] = dLast[b, :]</c>, every other row of dH zero, or, when
    /// <paramref name="accumulate"/> is 1, dLast added to what dH holds (an encoder's top layer under
    /// attention, whose outputs already have their gradient). Thread per (p, h) of dH, so each element
    /// is written exactly once (no atomics): the row looks up whether it is some sequence's last (rows
    /// are distinct: one per sequence).
    /// </summary>
    private static void LastStateBackwardKernel(Index1D index, int hidden, int batch, int accumulate, ArrayView<int> rows, ArrayView<float> dLast, ArrayView<float> dStates)
    {
        int p = index / hidden;
        int h = index - p * hidden;
        int b = p % batch; // time-major: row p belongs to sequence p mod B
        float injected = rows[b] == p ? dLast[(long)b * hidden + h] : 0f;
        dStates[index] = accumulate != 0 ? dStates[index] + injected : injected;
    }

    private Action<AcceleratorStream, Index1D, int, ArrayView<int>, ArrayView<float>, ArrayView<float>> lastStateForward = null!;
    private Action<AcceleratorStream, Index1D, int, int, int, ArrayView<int>, ArrayView<float>, ArrayView<float>> lastStateBackward = null!;

    private void LoadLastState()
    {
        lastStateForward = Accelerator.LoadAutoGroupedKernel<Index1D, int, ArrayView<int>, ArrayView<float>, ArrayView<float>>(LastStateForwardKernel);
        lastStateBackward = Accelerator.LoadAutoGroupedKernel<Index1D, int, int, int, ArrayView<int>, ArrayView<float>, ArrayView<float>>(LastStateBackwardKernel);
    }

    /// <summary><c>last[b] = states[rows[b]]</c>: rows [B] (time-major row of each sequence's last step), states [P, H], last [B, H].</summary>
    public void LastStateForward(int batch, int hidden, ArrayView<int> rows, ArrayView<float> states, ArrayView<float> last)
    {
        Require(batch > 0 && hidden > 0, $"last-state sizes must be positive (B={batch}, H={hidden}).");
        Require(rows.Length >= batch, $"rows holds {rows.Length} elements but {batch} are needed.");
        RequireLength(last, (long)batch * hidden, nameof(last));
        Count();
        lastStateForward(Accelerator.DefaultStream, batch * hidden, hidden, rows, states, last);
    }

    /// <summary>
    /// <c>dStates = 0</c> except <c>dStates[rows[b]] = dLast[b]</c> (or, with <paramref name="accumulate"/>, dLast added
    /// at those rows and the rest kept): dStates [P, H] with P a multiple of B, dLast [B, H].
    /// </summary>
    public void LastStateBackward(int positions, int batch, int hidden, ArrayView<int> rows, ArrayView<float> dLast, ArrayView<float> dStates, bool accumulate = false)
    {
        Require(positions > 0 && batch > 0 && hidden > 0 && positions % batch == 0, $"last-state sizes must be positive with P a multiple of B (P={positions}, B={batch}, H={hidden}).");
        Require(rows.Length >= batch, $"rows holds {rows.Length} elements but {batch} are needed.");
        RequireLength(dLast, (long)batch * hidden, nameof(dLast));
        RequireLength(dStates, (long)positions * hidden, nameof(dStates));
        Count();
        lastStateBackward(Accelerator.DefaultStream, positions * hidden, hidden, batch, accumulate ? 1 : 0, rows, dLast, dStates);
    }
}
