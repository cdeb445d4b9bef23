using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace GpuRnn.Kernels;

public sealed partial class DeviceKernels
{
    /// <summary>
    /// Attention weights over the source (Luong): for each row r = t·B + b of the scores [R, S] (time-major, as
    /// the decoder's steps), <c>a[r, j] = exp(s[r, j] − max) / Σ_{k &lt; len_b} exp(s[r, k] − max)</c> for the
    /// true source positions j &lt; len_b = lengths[r mod B], and 0 for the padded ones, so padding gets no weight
    /// (and, through the backward, no gradient). The max over the true positions is subtracted before
    /// exponentiating, as in <see cref="SoftmaxCrossEntropyKernel"/>: exp(s − max) ≤ 1 and the sum is ≥ 1.
    /// Thread per row; weights may alias scores.
    /// </summary>
    private static void MaskedSoftmaxForwardKernel(Index1D r, int batch, int columns, ArrayView<int> lengths, ArrayView<float> scores, ArrayView<float> weights)
    {
        long row = (long)r.X * columns;
        int length = lengths[r.X % batch];
        float max = scores[row];
        for (int j = 1; j < length; j++)
            max = XMath.Max(max, scores[row + j]);
        float sum = 0f;
        for (int j = 0; j < length; j++)
            sum += XMath.Exp(scores[row + j] - max);
        float inv = 1f / sum;
        for (int j = 0; j < columns; j++)
            weights[row + j] = j < length ? XMath.Exp(scores[row + j] - max) * inv : 0f;
    }

    /// <summary>
    /// Its gradient: <c>ds[r, j] = a[r, j]·(da[r, j] − Σ_k a[r, k]·da[r, k])</c> over the true positions, 0 over
    /// the padded ones. Thread per row; dScores may alias dWeights (the row's dot product is taken first).
    /// </summary>
    private static void MaskedSoftmaxBackwardKernel(Index1D r, int batch, int columns, ArrayView<int> lengths, ArrayView<float> weights, ArrayView<float> dWeights,
        ArrayView<float> dScores)
    {
        long row = (long)r.X * columns;
        int length = lengths[r.X % batch];
        float dot = 0f;
        for (int j = 0; j < length; j++)
            dot += weights[row + j] * dWeights[row + j];
        for (int j = 0; j < columns; j++)
            dScores[row + j] = j < length ? weights[row + j] * (dWeights[row + j] - dot) : 0f;
    }

    /// <summary>The attentional state's nonlinearity in place: <c>x = tanh(x)</c> (Luong eq. 5, h̃ = tanh(W_c[c; h])). Thread per element.</summary>
    private static void TanhForwardKernel(Index1D i, ArrayView<float> x) => x[i] = XMath.Tanh(x[i]);

    /// <summary>Its gradient from the output y = tanh(x): <c>dx = dy·(1 − y²)</c>; dx may alias dy. Thread per element.</summary>
    private static void TanhBackwardKernel(Index1D i, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx) => dx[i] = dy[i] * (1f - y[i] * y[i]);

    private Action<AcceleratorStream, Index1D, int, int, ArrayView<int>, ArrayView<float>, ArrayView<float>> maskedSoftmaxForward = null!;
    private Action<AcceleratorStream, Index1D, int, int, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>> maskedSoftmaxBackward = null!;
    private Action<AcceleratorStream, Index1D, ArrayView<float>> tanhForward = null!;
    private Action<AcceleratorStream, Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>> tanhBackward = null!;

    private void LoadAttention()
    {
        maskedSoftmaxForward = Accelerator.LoadAutoGroupedKernel<Index1D, int, int, ArrayView<int>, ArrayView<float>, ArrayView<float>>(MaskedSoftmaxForwardKernel);
        maskedSoftmaxBackward = Accelerator.LoadAutoGroupedKernel<Index1D, int, int, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(MaskedSoftmaxBackwardKernel);
        tanhForward = Accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<float>>(TanhForwardKernel);
        tanhBackward = Accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>>(TanhBackwardKernel);
    }

    private void RequireSoftmax(int rows, int batch, int columns, ArrayView<int> lengths)
    {
        Require(rows > 0 && batch > 0 && columns > 0 && rows % batch == 0, $"masked softmax sizes must be positive with R a multiple of B (R={rows}, B={batch}, S={columns}).");
        Require(lengths.Length >= batch, $"lengths holds {lengths.Length} elements but {batch} are needed.");
    }

    /// <summary>
    /// Masked softmax over the source positions: scores and weights [R, S] with row r = t·B + b, lengths [B]
    /// (1 ≤ length ≤ S: a sequence's true source positions); weights may be the scores' view.
    /// </summary>
    public void MaskedSoftmaxForward(int rows, int batch, int columns, ArrayView<int> lengths, ArrayView<float> scores, ArrayView<float> weights)
    {
        RequireSoftmax(rows, batch, columns, lengths);
        RequireLength(scores, (long)rows * columns, nameof(scores));
        RequireLength(weights, (long)rows * columns, nameof(weights));
        Count();
        maskedSoftmaxForward(Accelerator.DefaultStream, rows, batch, columns, lengths, scores, weights);
    }

    /// <summary>Gradient of <see cref="MaskedSoftmaxForward"/>: from the weights and dWeights [R, S] into dScores [R, S] (may be dWeights' view).</summary>
    public void MaskedSoftmaxBackward(int rows, int batch, int columns, ArrayView<int> lengths, ArrayView<float> weights, ArrayView<float> dWeights, ArrayView<float> dScores)
    {
        RequireSoftmax(rows, batch, columns, lengths);
        RequireLength(weights, (long)rows * columns, nameof(weights));
        RequireLength(dWeights, (long)rows * columns, nameof(dWeights));
        RequireLength(dScores, (long)rows * columns, nameof(dScores));
        Count();
        maskedSoftmaxBackward(Accelerator.DefaultStream, rows, batch, columns, lengths, weights, dWeights, dScores);
    }

    /// <summary><c>x = tanh(x)</c> over the first <paramref name="length"/> elements.</summary>
    public void TanhForward(long length, ArrayView<float> x)
    {
        Require(length > 0 && length <= int.MaxValue, $"tanh length must be between 1 and 2^31 - 1 (got {length}).");
        RequireLength(x, length, nameof(x));
        Count();
        tanhForward(Accelerator.DefaultStream, (int)length, x);
    }

    /// <summary><c>dx = dy·(1 − y²)</c> over the first <paramref name="length"/> elements, y = tanh(x); dx may be dy's view.</summary>
    public void TanhBackward(long length, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx)
    {
        Require(length > 0 && length <= int.MaxValue, $"tanh length must be between 1 and 2^31 - 1 (got {length}).");
        RequireLength(y, length, nameof(y));
        RequireLength(dy, length, nameof(dy));
        RequireLength(dx, length, nameof(dx));
        Count();
        tanhBackward(Accelerator.DefaultStream, (int)length, y, dy, dx);
    }
}
