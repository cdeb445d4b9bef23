using ILGPU;
using ILGPU.Runtime;

namespace GpuRnn.Kernels;

public sealed partial class DeviceKernels
{
    /// <summary>
    /// One-hot input without a one-hot matrix: <c>W_ih x_p</c> for a one-hot <c>x_p</c> is column
    /// <c>ids[p]</c> of W_ih, so the layer-0 input term is a gather. Both biases are added here so the
    /// recurrent step adds only one [B, H] term. Thread per (p, h); x is [P, H], W_ih [H, V].
    /// </summary>
    private static void EmbeddingForwardKernel(
        Index1D index, int hidden, int vocab,
        ArrayView<int> ids, ArrayView<float> wIh, ArrayView<float> bIh, ArrayView<float> bHh, ArrayView<float> x)
    {
        int p = index / hidden;
        int h = index - p * hidden;
        int id = ids[p];
        float w = id >= 0 ? wIh[(long)h * vocab + id] : 0f; // a padding id contributes no input
        x[index] = w + bIh[h] + bHh[h];
    }

    /// <summary>
    /// Gradient of the gather: <c>dW_ih[h, v] = Σ_{p : ids[p] = v} dz[p, h]</c>. No float atomics
    /// (DESIGN.md §5): the host, which holds the ids anyway, lists the positions of each token in
    /// ascending order (<paramref name="offsets"/> [V + 1], <paramref name="positions"/> [P]); each
    /// thread owns one (h, v) and sums its list in that fixed order, so the result is bit-reproducible.
    /// Every element of dW_ih is written (tokens absent from the batch get 0).
    /// </summary>
    private static void EmbeddingBackwardKernel(
        Index1D index, int hidden, int vocab,
        ArrayView<int> offsets, ArrayView<int> positions, ArrayView<float> dz, ArrayView<float> dWIh)
    {
        int h = index / vocab;
        int v = index - h * vocab;
        float sum = 0f;
        int end = offsets[v + 1];
        for (int q = offsets[v]; q < end; q++)
            sum += dz[(long)positions[q] * hidden + h];
        dWIh[index] = sum;
    }

    private Action<AcceleratorStream, Index1D, int, int, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> embeddingForward = null!;
    private Action<AcceleratorStream, Index1D, int, int, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<float>> embeddingBackward = null!;

    private void LoadEmbedding()
    {
        embeddingForward = Accelerator.LoadAutoGroupedKernel<Index1D, int, int, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(EmbeddingForwardKernel);
        embeddingBackward = Accelerator.LoadAutoGroupedKernel<Index1D, int, int, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<float>>(EmbeddingBackwardKernel);
    }

    /// <summary><c>x[p, :] = W_ih[:, ids[p]] + b_ih + b_hh</c>: ids [P] (each in [0, V), or negative for none), W_ih [H, V], x [P, H].</summary>
    public void EmbeddingForward(int positions, int hidden, int vocab, ArrayView<int> ids, ArrayView<float> wIh, ArrayView<float> bIh, ArrayView<float> bHh, ArrayView<float> x)
    {
        Require(positions > 0 && hidden > 0 && vocab > 0, $"embedding sizes must be positive (P={positions}, H={hidden}, V={vocab}).");
        Require(ids.Length >= positions, $"ids holds {ids.Length} elements but {positions} are needed.");
        RequireLength(wIh, (long)hidden * vocab, nameof(wIh));
        RequireLength(bIh, hidden, nameof(bIh));
        RequireLength(bHh, hidden, nameof(bHh));
        RequireLength(x, (long)positions * hidden, nameof(x));
        Count();
        embeddingForward(Accelerator.DefaultStream, positions * hidden, hidden, vocab, ids, wIh, bIh, bHh, x);
    }

    /// <summary>
    /// <c>dW_ih = Σ_p dz[p, :] ⊗ onehot(ids[p])</c> from the per-token position lists built by
    /// <see cref="TokenPositions"/>: offsets [V + 1], positions [P], dz [P, H], dW_ih [H, V] (overwritten).
    /// </summary>
    public void EmbeddingBackward(int hidden, int vocab, ArrayView<int> offsets, ArrayView<int> positions, ArrayView<float> dz, ArrayView<float> dWIh)
    {
        Require(hidden > 0 && vocab > 0, $"embedding sizes must be positive (H={hidden}, V={vocab}).");
        Require(offsets.Length >= vocab + 1, $"offsets holds {offsets.Length} elements but {vocab + 1} are needed.");
        RequireLength(dWIh, (long)hidden * vocab, nameof(dWIh));
        Count();
        embeddingBackward(Accelerator.DefaultStream, hidden * vocab, hidden, vocab, offsets, positions, dz, dWIh);
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
