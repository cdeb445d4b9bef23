using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace GpuRnn.Kernels;

/// <summary>The sizes of one additive-attention launch: B, the source window's steps S, H and the decoder cell's input-term width G.</summary>
public readonly record struct AdditiveSizes(int Batch, int SourceSteps, int Hidden, int Gates);

public sealed partial class DeviceKernels
{
    // Bahdanau (additive) attention, one decoder step t at a time (README "Attention"): the query is the decoder's first
    // layer's state s = h_t before the step, the keys K = M·W_kᵀ [S, B, H] and the values V = M·W_ctxᵀ [S, B, G] of the
    // memory M are computed once per source window by GEMMs, and the context enters the step's input term:
    //   q = W_q s,  e_j = v · tanh(q + K_j) (j < len_b),  a = softmax_j(e),  x_t += Σ_j a_j V_j (= W_ctx c, c = Σ_j a_j M_j).
    // Per step: two launches forward (scores with the softmax; the input), one backward (below). Rows are time-major
    // (j·B + b), as the encoder's outputs.

    /// <summary>
    /// Forward, scores and weights: thread per sequence b, q [B, H] = s·W_qᵀ (kept for the backward), then e_j and the
    /// softmax over the true source positions (the max subtracted first), weights [B, S] 0 on the padded positions.
    /// </summary>
    private static void AdditiveScoresKernel(Index1D index, AdditiveSizes n, ArrayView<int> lengths, ArrayView<float> state, ArrayView<float> wq,
        ArrayView<float> keys, ArrayView<float> v, ArrayView<float> query, ArrayView<float> weights)
    {
        int b = index.X, h = n.Hidden;
        long qb = (long)b * h, wb = (long)b * n.SourceSteps;
        for (int k = 0; k < h; k++)
        {
            float sum = 0f;
            for (int i = 0; i < h; i++)
                sum += wq[(long)k * h + i] * state[qb + i];
            query[qb + k] = sum;
        }
        int length = lengths[b];
        float max = float.NegativeInfinity;
        for (int j = 0; j < length; j++)
        {
            long kb = ((long)j * n.Batch + b) * h;
            float e = 0f;
            for (int k = 0; k < h; k++)
                e += v[k] * XMath.Tanh(query[qb + k] + keys[kb + k]);
            weights[wb + j] = e;
            max = XMath.Max(max, e);
        }
        float total = 0f;
        for (int j = 0; j < length; j++)
        {
            float a = XMath.Exp(weights[wb + j] - max);
            weights[wb + j] = a;
            total += a;
        }
        float inv = 1f / total;
        for (int j = 0; j < n.SourceSteps; j++)
            weights[wb + j] = j < length ? weights[wb + j] * inv : 0f;
    }

    /// <summary>Forward, the input: <c>x[b, g] += Σ_{j &lt; len_b} a[b, j]·V[j·B + b, g]</c>. Thread per (b, g) of x [B, G].</summary>
    private static void AdditiveInputKernel(Index1D index, AdditiveSizes n, ArrayView<int> lengths, ArrayView<float> weights, ArrayView<float> values, ArrayView<float> x)
    {
        int b = index / n.Gates;
        int g = index - b * n.Gates;
        int length = lengths[b];
        float sum = 0f;
        for (int j = 0; j < length; j++)
            sum += weights[(long)b * n.SourceSteps + j] * values[((long)j * n.Batch + b) * n.Gates + g];
        x[index] += sum;
    }

    /// <summary>
    /// Backward of one step, thread per sequence b, from dx [B, G] (the step's input-side pre-activation gradient):
    /// da_j = dx·V_j, de_j = a_j (da_j − Σ_k a_k da_k) (kept: dScores [B, S], 0 on padding), dq = Σ_j de_j v ⊙ (1 − tanh²(q + K_j))
    /// (kept: dQuery [B, H]), and ds = W_qᵀ dq added to dState [B, H] (the gradient w.r.t. the state the step read).
    /// </summary>
    private static void AdditiveStepBackwardKernel(Index1D index, AdditiveSizes n, ArrayView<int> lengths, ArrayView<float> dx, ArrayView<float> values,
        ArrayView<float> weights, ArrayView<float> query, ArrayView<float> keys, ArrayView<float> v, ArrayView<float> wq, ArrayView<float> dScores,
        ArrayView<float> dQuery, ArrayView<float> dState)
    {
        int b = index.X, h = n.Hidden, s = n.SourceSteps, g = n.Gates;
        long qb = (long)b * h, wb = (long)b * s, xb = (long)b * g;
        int length = lengths[b];
        float dot = 0f;
        for (int j = 0; j < length; j++)
        {
            long vb = ((long)j * n.Batch + b) * g;
            float da = 0f;
            for (int c = 0; c < g; c++)
                da += dx[xb + c] * values[vb + c];
            dScores[wb + j] = da;
            dot += weights[wb + j] * da;
        }
        for (int j = 0; j < s; j++)
            dScores[wb + j] = j < length ? weights[wb + j] * (dScores[wb + j] - dot) : 0f;
        for (int k = 0; k < h; k++)
        {
            float dq = 0f;
            for (int j = 0; j < length; j++)
            {
                float u = XMath.Tanh(query[qb + k] + keys[((long)j * n.Batch + b) * h + k]);
                dq += dScores[wb + j] * (1f - u * u);
            }
            dQuery[qb + k] = dq * v[k];
        }
        for (int i = 0; i < h; i++)
        {
            float ds = 0f;
            for (int k = 0; k < h; k++)
                ds += wq[(long)k * h + i] * dQuery[qb + k];
            dState[qb + i] += ds;
        }
    }

    /// <summary>
    /// After the steps, the keys' gradient: <c>dK[j·B + b, k] = v_k Σ_t de[t, b, j] (1 − tanh²(q[t, b, k] + K[j·B + b, k]))</c>
    /// over the <paramref name="steps"/> decoder steps (0 on padded source positions). Thread per element of dK [S, B, H].
    /// </summary>
    private static void AdditiveKeysBackwardKernel(Index1D index, AdditiveSizes n, int steps, ArrayView<int> lengths, ArrayView<float> dScores,
        ArrayView<float> query, ArrayView<float> keys, ArrayView<float> v, ArrayView<float> dKeys)
    {
        int h = n.Hidden;
        int row = index / h;
        int k = index - row * h;
        int j = row / n.Batch;
        int b = row - j * n.Batch;
        float sum = 0f;
        if (j < lengths[b])
        {
            for (int t = 0; t < steps; t++)
            {
                long r = (long)t * n.Batch + b;
                float u = XMath.Tanh(query[r * h + k] + keys[index]);
                sum += dScores[r * n.SourceSteps + j] * (1f - u * u);
            }
        }
        dKeys[index] = sum * v[k];
    }

    /// <summary>
    /// After the steps, the score vector's gradient: <c>dv_k = Σ_t Σ_b Σ_{j &lt; len_b} de[t, b, j]·tanh(q[t, b, k] + K[j·B + b, k])</c>,
    /// thread per k, summed in a fixed order (deterministic).
    /// </summary>
    private static void AdditiveScoreVectorBackwardKernel(Index1D index, AdditiveSizes n, int steps, ArrayView<int> lengths, ArrayView<float> dScores,
        ArrayView<float> query, ArrayView<float> keys, ArrayView<float> dv)
    {
        int k = index.X, h = n.Hidden;
        float sum = 0f;
        for (int t = 0; t < steps; t++)
        {
            for (int b = 0; b < n.Batch; b++)
            {
                long r = (long)t * n.Batch + b;
                int length = lengths[b];
                for (int j = 0; j < length; j++)
                    sum += dScores[r * n.SourceSteps + j] * XMath.Tanh(query[r * h + k] + keys[((long)j * n.Batch + b) * h + k]);
            }
        }
        dv[k] = sum;
    }

    private Action<AcceleratorStream, Index1D, AdditiveSizes, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        ArrayView<float>> additiveScores = null!;
    private Action<AcceleratorStream, Index1D, AdditiveSizes, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>> additiveInput = null!;
    private Action<AcceleratorStream, Index1D, AdditiveSizes, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> additiveStepBackward = null!;
    private Action<AcceleratorStream, Index1D, AdditiveSizes, int, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        ArrayView<float>> additiveKeysBackward = null!;
    private Action<AcceleratorStream, Index1D, AdditiveSizes, int, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> additiveScoreVectorBackward = null!;

    private void LoadAdditiveAttention()
    {
        additiveScores = Accelerator.LoadAutoGroupedKernel<Index1D, AdditiveSizes, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<float>>(AdditiveScoresKernel);
        additiveInput = Accelerator.LoadAutoGroupedKernel<Index1D, AdditiveSizes, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(AdditiveInputKernel);
        additiveStepBackward = Accelerator.LoadAutoGroupedKernel<Index1D, AdditiveSizes, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(AdditiveStepBackwardKernel);
        additiveKeysBackward = Accelerator.LoadAutoGroupedKernel<Index1D, AdditiveSizes, int, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<float>>(AdditiveKeysBackwardKernel);
        additiveScoreVectorBackward = Accelerator.LoadAutoGroupedKernel<Index1D, AdditiveSizes, int, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>>(AdditiveScoreVectorBackwardKernel);
    }

    private static void RequireAdditive(AdditiveSizes n, ArrayView<int> lengths)
    {
        Require(n.Batch > 0 && n.SourceSteps > 0 && n.Hidden > 0 && n.Gates > 0,
            $"additive attention sizes must be positive (B={n.Batch}, S={n.SourceSteps}, H={n.Hidden}, G={n.Gates}).");
        Require(lengths.Length >= n.Batch, $"lengths holds {lengths.Length} elements but {n.Batch} are needed.");
    }

    /// <summary>
    /// One step's query and weights: state s [B, H], W_q [H, H], keys [S·B, H], v [H] → query [B, H] and weights [B, S]
    /// (softmax over each sequence's true source positions, 0 after).
    /// </summary>
    public void AdditiveScores(AdditiveSizes n, ArrayView<int> lengths, ArrayView<float> state, ArrayView<float> wq, ArrayView<float> keys, ArrayView<float> v,
        ArrayView<float> query, ArrayView<float> weights)
    {
        RequireAdditive(n, lengths);
        long bh = (long)n.Batch * n.Hidden;
        RequireLength(state, bh, nameof(state));
        RequireLength(wq, (long)n.Hidden * n.Hidden, nameof(wq));
        RequireLength(keys, n.SourceSteps * bh, nameof(keys));
        RequireLength(v, n.Hidden, nameof(v));
        RequireLength(query, bh, nameof(query));
        RequireLength(weights, (long)n.Batch * n.SourceSteps, nameof(weights));
        Count();
        additiveScores(Accelerator.DefaultStream, n.Batch, n, lengths, state, wq, keys, v, query, weights);
    }

    /// <summary>One step's input: x [B, G] += Σ_j weights [B, S] · values [S·B, G].</summary>
    public void AdditiveInput(AdditiveSizes n, ArrayView<int> lengths, ArrayView<float> weights, ArrayView<float> values, ArrayView<float> x)
    {
        RequireAdditive(n, lengths);
        long bg = (long)n.Batch * n.Gates;
        RequireLength(weights, (long)n.Batch * n.SourceSteps, nameof(weights));
        RequireLength(values, n.SourceSteps * bg, nameof(values));
        RequireLength(x, bg, nameof(x));
        Count();
        additiveInput(Accelerator.DefaultStream, (int)bg, n, lengths, weights, values, x);
    }

    /// <summary>
    /// One step's backward from dx [B, G]: dScores [B, S] and dQuery [B, H] written (kept for the parameter gradients),
    /// W_qᵀ dq added to dState [B, H].
    /// </summary>
    public void AdditiveStepBackward(AdditiveSizes n, ArrayView<int> lengths, ArrayView<float> dx, ArrayView<float> values, ArrayView<float> weights,
        ArrayView<float> query, ArrayView<float> keys, ArrayView<float> v, ArrayView<float> wq, ArrayView<float> dScores, ArrayView<float> dQuery, ArrayView<float> dState)
    {
        RequireAdditive(n, lengths);
        long bh = (long)n.Batch * n.Hidden, bs = (long)n.Batch * n.SourceSteps;
        RequireLength(dx, (long)n.Batch * n.Gates, nameof(dx));
        RequireLength(values, (long)n.SourceSteps * n.Batch * n.Gates, nameof(values));
        RequireLength(weights, bs, nameof(weights));
        RequireLength(query, bh, nameof(query));
        RequireLength(keys, n.SourceSteps * bh, nameof(keys));
        RequireLength(v, n.Hidden, nameof(v));
        RequireLength(wq, (long)n.Hidden * n.Hidden, nameof(wq));
        RequireLength(dScores, bs, nameof(dScores));
        RequireLength(dQuery, bh, nameof(dQuery));
        RequireLength(dState, bh, nameof(dState));
        Count();
        additiveStepBackward(Accelerator.DefaultStream, n.Batch, n, lengths, dx, values, weights, query, keys, v, wq, dScores, dQuery, dState);
    }

    /// <summary>
    /// After <paramref name="steps"/> steps' backward: dKeys [S·B, H] from dScores [T·B, S] and query [T·B, H] (written), and
    /// dv [H] (written).
    /// </summary>
    public void AdditiveKeysBackward(AdditiveSizes n, int steps, ArrayView<int> lengths, ArrayView<float> dScores, ArrayView<float> query, ArrayView<float> keys,
        ArrayView<float> v, ArrayView<float> dKeys, ArrayView<float> dv)
    {
        RequireAdditive(n, lengths);
        Require(steps > 0, $"additive attention needs at least one decoder step (got {steps}).");
        long sbh = (long)n.SourceSteps * n.Batch * n.Hidden;
        RequireLength(dScores, (long)steps * n.Batch * n.SourceSteps, nameof(dScores));
        RequireLength(query, (long)steps * n.Batch * n.Hidden, nameof(query));
        RequireLength(keys, sbh, nameof(keys));
        RequireLength(v, n.Hidden, nameof(v));
        RequireLength(dKeys, sbh, nameof(dKeys));
        RequireLength(dv, n.Hidden, nameof(dv));
        Count();
        additiveKeysBackward(Accelerator.DefaultStream, (int)sbh, n, steps, lengths, dScores, query, keys, v, dKeys);
        Count();
        additiveScoreVectorBackward(Accelerator.DefaultStream, n.Hidden, n, steps, lengths, dScores, query, keys, dv);
    }
}
