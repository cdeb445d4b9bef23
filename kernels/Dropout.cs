using ILGPU;
using ILGPU.Runtime;

namespace GpuRnn.Kernels;

/// <summary>
/// One dropout mask: element i of a block is kept when the counter-based hash of (<see cref="Key"/>, i) is at
/// least <see cref="Threshold"/> (of 2²⁴ equally likely values), and a kept element is scaled by
/// <see cref="Scale"/> = 1/(1 − p) (inverted dropout). Nothing is stored: the forward and the backward pass
/// compute the same mask from the key, which a run derives from (seed, update number, site), so masks are
/// deterministic for a seed and continue exactly after a resume.
/// </summary>
/// <param name="Key">The 64-bit key of one block (one layer's outputs in one update).</param>
/// <param name="Threshold">round(p·2²⁴): the hash's top 24 bits below it drop the element.</param>
/// <param name="Scale">1/(1 − p) rounded to float once.</param>
public readonly record struct DropoutMask(ulong Key, uint Threshold, float Scale)
{
    /// <summary>The mask of one block: probability <paramref name="p"/> in [0, 1), the run's seed, the update number and the block's site.</summary>
    public static DropoutMask Of(float p, int seed, long step, int site)
    {
        if (!(p >= 0f && p < 1f))
            throw new ArgumentOutOfRangeException(nameof(p), p, "dropout probability must be in [0, 1)");
        ulong key = Mix(Mix(Mix((uint)seed) ^ (ulong)step) ^ (uint)site);
        return new DropoutMask(key, (uint)Math.Round(p * (double)(1 << 24)), (float)(1.0 / (1.0 - p)));
    }

    /// <summary>Whether element <paramref name="index"/> of the block is kept (the same function the kernel runs).</summary>
    public bool Keeps(long index) => Keeps(Key, index, Threshold);

    /// <summary>Kept iff the top 24 bits of SplitMix64(key + index·φ) are ≥ threshold.</summary>
    internal static bool Keeps(ulong key, long index, uint threshold) => (uint)(Mix(key + (ulong)index * 0x9E3779B97F4A7C15UL) >> 40) >= threshold;

    /// <summary>SplitMix64's finaliser: a bijection of 64-bit values whose outputs pass BigCrush for consecutive inputs.</summary>
    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}

public sealed partial class DeviceKernels
{
    /// <summary>
    /// Dropout, forward and backward in one: <c>y[i] = keep(i) ? x[i]·scale : 0</c>. The map is linear with a
    /// diagonal Jacobian (scale or 0 per element), so the backward pass is the same launch on the gradient with
    /// the same mask: <c>dx[i] = keep(i) ? dy[i]·scale : 0</c>. Thread per element; x and y may be one view.
    /// </summary>
    private static void DropoutKernel(Index1D i, ulong key, uint threshold, float scale, ArrayView<float> x, ArrayView<float> y) =>
        y[i] = DropoutMask.Keeps(key, i, threshold) ? x[i] * scale : 0f;

    private Action<AcceleratorStream, Index1D, ulong, uint, float, ArrayView<float>, ArrayView<float>> dropout = null!;

    private void LoadDropout() =>
        dropout = Accelerator.LoadAutoGroupedKernel<Index1D, ulong, uint, float, ArrayView<float>, ArrayView<float>>(DropoutKernel);

    /// <summary>Forward: y [n] = the kept elements of x [n], scaled (y may be x).</summary>
    public void DropoutForward(int n, DropoutMask mask, ArrayView<float> x, ArrayView<float> y) => Dropout(n, mask, x, y);

    /// <summary>Backward: dx [n] = the kept elements of dy [n], scaled: the same mask as the forward (dx may be dy).</summary>
    public void DropoutBackward(int n, DropoutMask mask, ArrayView<float> dy, ArrayView<float> dx) => Dropout(n, mask, dy, dx);

    private void Dropout(int n, DropoutMask mask, ArrayView<float> x, ArrayView<float> y)
    {
        Require(n > 0, $"dropout length must be positive ({n}).");
        RequireLength(x, n, nameof(x));
        RequireLength(y, n, nameof(y));
        Count();
        dropout(Accelerator.DefaultStream, n, mask.Key, mask.Threshold, mask.Scale, x, y);
    }
}
