using ILGPU;
using ILGPU.Runtime;

namespace GpuRnn.Kernels;

public sealed partial class DeviceKernels
{
    /// <summary>
    /// Bias gradients: column sums of a [R, N] matrix, one thread per column summing its rows in
    /// order (deterministic, no atomics). The sum is written to both outputs because an Elman layer's
    /// two biases, b_ih and b_hh, receive the same gradient.
    /// </summary>
    private static void ColumnSumKernel(Index1D j, int rows, int cols, ArrayView<float> x, ArrayView<float> sum1, ArrayView<float> sum2)
    {
        float s = 0f;
        for (int r = 0; r < rows; r++)
            s += x[(long)r * cols + j];
        sum1[j] = s;
        sum2[j] = s;
    }

    /// <summary>
    /// Sum (or sum of squares) of a whole buffer by ONE group: each thread strides over the buffer,
    /// then a shared-memory tree folds the partial sums. The order is fixed by the group size, so the
    /// result is bit-reproducible, unlike a reduction with atomics. Writes result[slot].
    /// </summary>
    private static void ReduceSumKernel(long length, int squares, ArrayView<float> x, ArrayView<float> result, int slot)
    {
        var partial = SharedMemory.GetDynamic<float>();
        int t = Group.IdxX;
        int n = Group.DimX;
        float s = 0f;
        for (long i = t; i < length; i += n)
        {
            float v = x[i];
            s += squares != 0 ? v * v : v;
        }
        partial[t] = s;
        Group.Barrier();
        // Fold the upper part onto the lower one; `width` covers group sizes that are not powers of two.
        for (int width = n; width > 1;)
        {
            int half = (width + 1) / 2;
            if (t + half < width)
                partial[t] += partial[t + half];
            Group.Barrier();
            width = half;
        }
        if (t == 0)
            result[slot] = partial[0];
    }

    private Action<AcceleratorStream, Index1D, int, int, ArrayView<float>, ArrayView<float>, ArrayView<float>> columnSum = null!;
    private Action<KernelConfig, long, int, ArrayView<float>, ArrayView<float>, int> reduceSum = null!;

    private void LoadReductions()
    {
        columnSum = Accelerator.LoadAutoGroupedKernel<Index1D, int, int, ArrayView<float>, ArrayView<float>, ArrayView<float>>(ColumnSumKernel);
        reduceSum = Accelerator.LoadStreamKernel<long, int, ArrayView<float>, ArrayView<float>, int>(ReduceSumKernel);
    }

    /// <summary>Column sums of x [R, N] into <paramref name="sum1"/> and <paramref name="sum2"/> [N] (pass the same view twice for one output).</summary>
    public void ColumnSum(int rows, int cols, ArrayView<float> x, ArrayView<float> sum1, ArrayView<float> sum2)
    {
        Require(rows > 0 && cols > 0, $"column-sum sizes must be positive (R={rows}, N={cols}).");
        RequireLength(x, (long)rows * cols, nameof(x));
        RequireLength(sum1, cols, nameof(sum1));
        RequireLength(sum2, cols, nameof(sum2));
        Count();
        columnSum(Accelerator.DefaultStream, cols, rows, cols, x, sum1, sum2);
    }

    /// <summary><c>result[slot] = Σ x</c> (or <c>Σ x²</c> when <paramref name="squares"/>) over the first <paramref name="length"/> elements.</summary>
    public void ReduceSum(long length, bool squares, ArrayView<float> x, ArrayView<float> result, int slot)
    {
        Require(length > 0, $"reduction length must be positive ({length}).");
        RequireLength(x, length, nameof(x));
        Require(slot >= 0 && slot < result.Length, $"result slot {slot} is outside a buffer of {result.Length}.");
        Count();
        reduceSum(ReduceConfig, length, squares ? 1 : 0, x, result, slot);
    }

    /// <summary>The one group of <see cref="ReduceGroup"/> threads that runs a reduction, with a float of shared memory each.</summary>
    private KernelConfig ReduceConfig => new(1, ReduceGroup, SharedMemoryConfig.RequestDynamic<float>(ReduceGroup));
}
