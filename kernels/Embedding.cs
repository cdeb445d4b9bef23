using ILGPU;
using ILGPU.Runtime;

namespace GpuRnn.Kernels;

public sealed partial class DeviceKernels
{
    /// <summary>
    /// One-hot input without a one-hot matrix: <c>W_ih x_p</c> for a one-hot <c>x_p</c> is column
    /// <c>ids[p]</c> of W_ih, so the layer-0 input term is a gather. Both biases are added here so the
    /// recurrent step adds only one [B, G] term — b_hh only to its first <c>bHhColumns</c> columns (a GRU's
    /// b_hn sits inside r ⊙ (…) and is added by its step). Thread per (p, j); x is [P, G], W_ih [G, V].
    /// </summary>
    private static void EmbeddingForwardKernel(
        Index1D index, int columns, int vocab, int bHhColumns,
        ArrayView<int> ids, ArrayView<float> wIh, ArrayView<float> bIh, ArrayView<float> bHh, ArrayView<float> x)
    {
        int p = index / columns;
        int j = index - p * columns;
        int id = ids[p];
        float w = id >= 0 ? wIh[(long)j * vocab + id] : 0f; // a padding id contributes no input
        float v = w + bIh[j];
        if (j < bHhColumns)
            v += bHh[j];
        x[index] = v;
    }

    /// <summary>
    /// Gradient of the gather: <c>dW_ih[j, v] = Σ_{p : ids[p] = v} dz[p, j]</c> for any number of columns
    /// (H for Elman, G = g·H for the gated cells, whose dz is the input-side pre-activation gradient dAx). No float atomics
    /// (DESIGN.md §5): the host, which holds the ids anyway, lists the positions of each token in
    /// ascending order (<paramref name="offsets"/> [V + 1], <paramref name="positions"/> [P]); each
    /// thread owns one (j, v) and sums its list in that fixed order, so the result is bit-reproducible.
    /// Every element of dW_ih is written (tokens absent from the batch get 0).
    /// </summary>
    private static void EmbeddingBackwardKernel(
        Index1D index, int columns, int vocab,
        ArrayView<int> offsets, ArrayView<int> positions, ArrayView<float> dz, ArrayView<float> dWIh)
    {
        int j = index / vocab;
        int v = index - j * vocab;
        float sum = 0f;
        int end = offsets[v + 1];
        for (int q = offsets[v]; q < end; q++)
            sum += dz[(long)positions[q] * columns + j];
        dWIh[index] = sum;
    }

    private Action<AcceleratorStream, Index1D, int, int, int, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> embeddingForward = null!;
    private Action<AcceleratorStream, Index1D, int, int, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<float>> embeddingBackward = null!;

    private void LoadEmbedding()
    {
        embeddingForward = Accelerator.LoadAutoGroupedKernel<Index1D, int, int, int, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(EmbeddingForwardKernel);
        embeddingBackward = Accelerator.LoadAutoGroupedKernel<Index1D, int, int, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<float>>(EmbeddingBackwardKernel);
    }

    /// <summary>
    /// <c>x[p, :] = W_ih[:, ids[p]] + b_ih + b_hh</c>, b_hh only on columns &lt; <paramref name="bHhColumns"/>
    /// (default all; a GRU passes 2H, see <see cref="CellShapes.FoldedHhColumns"/>): ids [P] (each in [0, V),
    /// or negative for none), W_ih [G, V], both biases [G], x [P, G], where G = <paramref name="columns"/>.
    /// </summary>
    public void EmbeddingForward(int positions, int columns, int vocab, ArrayView<int> ids, ArrayView<float> wIh, ArrayView<float> bIh, ArrayView<float> bHh, ArrayView<float> x,
        int bHhColumns = int.MaxValue)
    {
        Require(positions > 0 && columns > 0 && vocab > 0, $"embedding sizes must be positive (P={positions}, G={columns}, V={vocab}).");
        Require(bHhColumns >= 0, $"bHhColumns must not be negative ({bHhColumns}).");
        Require(ids.Length >= positions, $"ids holds {ids.Length} elements but {positions} are needed.");
        RequireLength(wIh, (long)columns * vocab, nameof(wIh));
        RequireLength(bIh, columns, nameof(bIh));
        RequireLength(bHh, columns, nameof(bHh));
        RequireLength(x, (long)positions * columns, nameof(x));
        Count();
        embeddingForward(Accelerator.DefaultStream, positions * columns, columns, vocab, bHhColumns, ids, wIh, bIh, bHh, x);
    }

    /// <summary>
    /// <c>dW_ih = Σ_p dz[p, :] ⊗ onehot(ids[p])</c> from the per-token position lists built by
    /// <see cref="TokenPositions"/>: offsets [V + 1], positions [P], dz [P, G], dW_ih [G, V] (overwritten),
    /// G = <paramref name="columns"/> (H for Elman, g·H for a gated cell).
    /// </summary>
    public void EmbeddingBackward(int columns, int vocab, ArrayView<int> offsets, ArrayView<int> positions, ArrayView<float> dz, ArrayView<float> dWIh)
    {
        Require(columns > 0 && vocab > 0, $"embedding sizes must be positive (G={columns}, V={vocab}).");
        Require(offsets.Length >= vocab + 1, $"offsets holds {offsets.Length} elements but {vocab + 1} are needed.");
        RequireLength(dWIh, (long)columns * vocab, nameof(dWIh));
        Count();
        embeddingBackward(Accelerator.DefaultStream, columns * vocab, columns, vocab, offsets, positions, dz, dWIh);
    }

    /// <summary>
    /// Host side of the deterministic scatter: a counting sort of positions by token id, stable so
    /// each token's positions stay ascending. Writes <paramref name="offsets"/> [V + 1] and
    /// <paramref name="positions"/> [P]; negative ids (padding) are left out. Allocates nothing.
    /// </summary>
    public static void TokenPositions(ReadOnlySpan<int> ids, int vocab, Span<int> offsets, Span<int> positions)
    {
        if (offsets.Length < vocab + 1)
            throw new ArgumentException($"offsets needs {vocab + 1} elements.", nameof(offsets));
        offsets[..(vocab + 1)].Clear();
        foreach (int id in ids)
        {
            if (id >= vocab)
                throw new ArgumentOutOfRangeException(nameof(ids), $"token id {id} is outside the vocabulary of {vocab}.");
            if (id >= 0)
                offsets[id + 1]++;
        }
        for (int v = 0; v < vocab; v++)
            offsets[v + 1] += offsets[v];
        // offsets[v] is now the start of token v; walk with a cursor per token using the end as scratch.
        for (int p = 0; p < ids.Length; p++)
        {
            int id = ids[p];
            if (id >= 0)
                positions[offsets[id]++] = p;
        }
        // Each offsets[v] was advanced to the end of its run, i.e. the start of v + 1: shift back.
        for (int v = vocab; v > 0; v--)
            offsets[v] = offsets[v - 1];
        offsets[0] = 0;
    }
}
