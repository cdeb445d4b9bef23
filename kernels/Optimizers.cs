using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace GpuRnn.Kernels;

/// <summary>
/// Scalars of one optimizer update. The host computes them in double and rounds each to float once,
/// as torch.optim does with its Python-float hyper-parameters: <c>1 − β</c> is formed in double
/// before the cast (1 − 0.999f would be off by 5e-5 relative).
/// </summary>
/// <param name="Lr">Learning rate.</param>
/// <param name="Momentum">SGD momentum (0 = plain SGD).</param>
/// <param name="OneMinusBeta1">Adam: 1 − β1, the lerp weight of the first moment.</param>
/// <param name="Beta2">Adam β2, or RMSprop α: decay of the second moment.</param>
/// <param name="OneMinusBeta2">1 − β2 (or 1 − α), the weight of g².</param>
/// <param name="Eps">Denominator ε (Adam, RMSprop, Adagrad).</param>
/// <param name="StepSize">Adam: lr / (1 − β1^step).</param>
/// <param name="Bc2Sqrt">Adam: √(1 − β2^step).</param>
/// <param name="MaxNorm">Clip by global L2 norm to this value; 0 = off. The squared norm is read from the device.</param>
/// <param name="ClipValue">Clamp each gradient to [−ClipValue, ClipValue]; 0 = off.</param>
public readonly record struct OptimizerArgs(
    float Lr, float Momentum, float OneMinusBeta1, float Beta2, float OneMinusBeta2, float Eps,
    float StepSize, float Bc2Sqrt, float MaxNorm, float ClipValue);

public sealed partial class DeviceKernels
{
    /// <summary>
    /// The gradient as the optimizer sees it after clipping. By norm exactly as
    /// <c>torch.nn.utils.clip_grad_norm_</c>: coef = max_norm / (‖g‖ + 1e-6), clamped to ≤ 1, and
    /// every gradient multiplied by it; then by value (<c>clip_grad_value_</c>) when both are on.
    /// </summary>
    private static float ClippedGradient(float g, OptimizerArgs o, ArrayView<float> scalars, int normSlot)
    {
        if (o.MaxNorm > 0f)
        {
            float total = XMath.Sqrt(scalars[normSlot]);
            float coef = o.MaxNorm / (total + 1e-6f);
            g *= XMath.Min(coef, 1f);
        }
        if (o.ClipValue > 0f)
            g = XMath.Clamp(g, -o.ClipValue, o.ClipValue);
        return g;
    }

    /// <summary>torch.optim.SGD (dampening 0, no Nesterov): buf = μ·buf + g; p −= lr·buf. A zero buffer makes the first step buf = g, as torch's clone.</summary>
    private static void SgdKernel(Index1D i, OptimizerArgs o, ArrayView<float> p, ArrayView<float> grad, ArrayView<float> buf, ArrayView<float> scalars, int normSlot)
    {
        float g = ClippedGradient(grad[i], o, scalars, normSlot);
        if (o.Momentum != 0f)
        {
            g = buf[i] * o.Momentum + g;
            buf[i] = g;
        }
        p[i] = p[i] - o.Lr * g;
    }

    /// <summary>torch.optim.Adagrad (lr_decay 0, initial accumulator 0): sum += g²; p −= lr·g / (√sum + ε).</summary>
    private static void AdagradKernel(Index1D i, OptimizerArgs o, ArrayView<float> p, ArrayView<float> grad, ArrayView<float> sum, ArrayView<float> scalars, int normSlot)
    {
        float g = ClippedGradient(grad[i], o, scalars, normSlot);
        float s = sum[i] + g * g;
        sum[i] = s;
        p[i] = p[i] - o.Lr * (g / (XMath.Sqrt(s) + o.Eps));
    }

    /// <summary>torch.optim.RMSprop (not centered, no momentum): a = α·a + (1 − α)·g²; p −= lr·g / (√a + ε).</summary>
    private static void RmsPropKernel(Index1D i, OptimizerArgs o, ArrayView<float> p, ArrayView<float> grad, ArrayView<float> squareAvg, ArrayView<float> scalars, int normSlot)
    {
        float g = ClippedGradient(grad[i], o, scalars, normSlot);
        float a = squareAvg[i] * o.Beta2 + o.OneMinusBeta2 * g * g;
        squareAvg[i] = a;
        p[i] = p[i] - o.Lr * (g / (XMath.Sqrt(a) + o.Eps));
    }

    /// <summary>
    /// torch.optim.Adam (no weight decay, no AMSGrad), in torch's operation order:
    /// m = lerp(m, g, 1 − β1); v = β2·v + (1 − β2)·g²; p −= step_size · m / (√v / √bc2 + ε).
    /// </summary>
    private static void AdamKernel(Index1D i, OptimizerArgs o, ArrayView<float> p, ArrayView<float> grad, ArrayView<float> m, ArrayView<float> v, ArrayView<float> scalars, int normSlot)
    {
        float g = ClippedGradient(grad[i], o, scalars, normSlot);
        float mi = m[i] + o.OneMinusBeta1 * (g - m[i]);
        float vi = v[i] * o.Beta2 + o.OneMinusBeta2 * g * g;
        m[i] = mi;
        v[i] = vi;
        float denom = XMath.Sqrt(vi) / o.Bc2Sqrt + o.Eps;
        p[i] = p[i] - o.StepSize * (mi / denom);
    }

    private Action<AcceleratorStream, Index1D, OptimizerArgs, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> sgd = null!;
    private Action<AcceleratorStream, Index1D, OptimizerArgs, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> adagrad = null!;
    private Action<AcceleratorStream, Index1D, OptimizerArgs, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> rmsProp = null!;
    private Action<AcceleratorStream, Index1D, OptimizerArgs, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> adam = null!;

    private void LoadOptimizers()
    {
        sgd = Accelerator.LoadAutoGroupedKernel<Index1D, OptimizerArgs, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(SgdKernel);
        adagrad = Accelerator.LoadAutoGroupedKernel<Index1D, OptimizerArgs, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(AdagradKernel);
        rmsProp = Accelerator.LoadAutoGroupedKernel<Index1D, OptimizerArgs, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(RmsPropKernel);
        adam = Accelerator.LoadAutoGroupedKernel<Index1D, OptimizerArgs, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(AdamKernel);
    }

    private static void RequireUpdate(ArrayView<float> p, ArrayView<float> grad, ArrayView<float> scalars, int normSlot, params ReadOnlySpan<ArrayView<float>> slots)
    {
        Require(p.Length > 0, "the parameter buffer is empty.");
        RequireLength(grad, p.Length, nameof(grad));
        foreach (var slot in slots)
            RequireLength(slot, p.Length, nameof(slots));
        Require(normSlot >= 0 && normSlot < scalars.Length, $"norm slot {normSlot} is outside a buffer of {scalars.Length}.");
    }

    /// <summary>SGD update of every element of p; <paramref name="buf"/> is the momentum buffer (unused when momentum is 0).</summary>
    public void Sgd(OptimizerArgs o, ArrayView<float> p, ArrayView<float> grad, ArrayView<float> buf, ArrayView<float> scalars, int normSlot)
    {
        RequireUpdate(p, grad, scalars, normSlot, buf);
        Count();
        sgd(Accelerator.DefaultStream, (int)p.Length, o, p, grad, buf, scalars, normSlot);
    }

    /// <summary>Adagrad update; <paramref name="sum"/> is the accumulated squared gradient.</summary>
    public void Adagrad(OptimizerArgs o, ArrayView<float> p, ArrayView<float> grad, ArrayView<float> sum, ArrayView<float> scalars, int normSlot)
    {
        RequireUpdate(p, grad, scalars, normSlot, sum);
        Count();
        adagrad(Accelerator.DefaultStream, (int)p.Length, o, p, grad, sum, scalars, normSlot);
    }

    /// <summary>RMSprop update; <paramref name="squareAvg"/> is the running mean of g².</summary>
    public void RmsProp(OptimizerArgs o, ArrayView<float> p, ArrayView<float> grad, ArrayView<float> squareAvg, ArrayView<float> scalars, int normSlot)
    {
        RequireUpdate(p, grad, scalars, normSlot, squareAvg);
        Count();
        rmsProp(Accelerator.DefaultStream, (int)p.Length, o, p, grad, squareAvg, scalars, normSlot);
    }

    /// <summary>Adam update; <paramref name="m"/> and <paramref name="v"/> are exp_avg and exp_avg_sq.</summary>
    public void Adam(OptimizerArgs o, ArrayView<float> p, ArrayView<float> grad, ArrayView<float> m, ArrayView<float> v, ArrayView<float> scalars, int normSlot)
    {
        RequireUpdate(p, grad, scalars, normSlot, m, v);
        Count();
        adam(Accelerator.DefaultStream, (int)p.Length, o, p, grad, m, v, scalars, normSlot);
    }
}
