using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace GpuRnn.Kernels;

public sealed partial class DeviceKernels
{
    /// <summary>
    /// Softmax, cross-entropy and its gradient in one pass per row (thread per row), so the
    /// probabilities are never stored. The row max is subtracted before exponentiating: exp of a
    /// large logit overflows float32 (exp(89) = ∞), while exp(l − max) ≤ 1 and the sum is ≥ 1.
    /// loss_r = log Σ_v exp(l_v − max) − (l_target − max); dlogits = (softmax − onehot)·scale.
    /// A negative target is padding: no loss and a zero gradient row.
    /// logits, dlogits [R, V] (dlogits may alias logits), targets [R], rowLoss [R].
    /// </summary>
    private static void SoftmaxCrossEntropyKernel(
        Index1D r, int vocab, float scale,
        ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> rowLoss, ArrayView<float> dlogits)
    {
        long row = (long)r.X * vocab;
        int target = targets[r];
        if (target < 0)
        {
            rowLoss[r] = 0f;
            for (int v = 0; v < vocab; v++)
                dlogits[row + v] = 0f;
            return;
        }
        float max = logits[row];
        for (int v = 1; v < vocab; v++)
            max = XMath.Max(max, logits[row + v]);
        float sum = 0f;
        for (int v = 0; v < vocab; v++)
            sum += XMath.Exp(logits[row + v] - max);
        float logSum = XMath.Log(sum);
        rowLoss[r] = logSum - (logits[row + target] - max);
        float inv = 1f / sum;
        for (int v = 0; v < vocab; v++)
        {
            float p = XMath.Exp(logits[row + v] - max) * inv;
            dlogits[row + v] = (v == target ? p - 1f : p) * scale;
        }
    }

    private Action<AcceleratorStream, Index1D, int, float, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>> softmaxCrossEntropy = null!;

    private void LoadSoftmaxCrossEntropy() =>
        softmaxCrossEntropy = Accelerator.LoadAutoGroupedKernel<Index1D, int, float, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>>(SoftmaxCrossEntropyKernel);

    /// <summary>
    /// Row-wise softmax cross-entropy with its gradient: logits [R, V], targets [R] (negative = ignored),
    /// rowLoss [R], dlogits [R, V] = (softmax − onehot)·<paramref name="scale"/>; use scale = 1/(counted targets)
    /// for a mean loss. <paramref name="dlogits"/> may be the same view as <paramref name="logits"/>.
    /// </summary>
    public void SoftmaxCrossEntropy(int rows, int vocab, float scale, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> rowLoss, ArrayView<float> dlogits)
    {
        Require(rows > 0 && vocab > 0, $"softmax sizes must be positive (R={rows}, V={vocab}).");
        RequireLength(logits, (long)rows * vocab, nameof(logits));
        Require(targets.Length >= rows, $"targets holds {targets.Length} elements but {rows} are needed.");
        RequireLength(rowLoss, rows, nameof(rowLoss));
        RequireLength(dlogits, (long)rows * vocab, nameof(dlogits));
        Count();
        softmaxCrossEntropy(Accelerator.DefaultStream, rows, vocab, scale, logits, targets, rowLoss, dlogits);
    }
}
