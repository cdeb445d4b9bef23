using GpuRnn.Kernels;

namespace GpuRnn;

/// <summary>The optimizers GpuRnn implements, each exactly as its <c>torch.optim</c> namesake with default hyper-parameters.</summary>
public enum OptimizerKind
{
    /// <summary><c>torch.optim.SGD</c>, optionally with momentum (dampening 0, no Nesterov).</summary>
    Sgd,
    /// <summary><c>torch.optim.Adagrad</c> (lr_decay 0, eps 1e-10).</summary>
    Adagrad,
    /// <summary><c>torch.optim.RMSprop</c> (alpha 0.99, eps 1e-8, not centered).</summary>
    RmsProp,
    /// <summary><c>torch.optim.Adam</c> (betas 0.9/0.999, eps 1e-8).</summary>
    Adam,
}

/// <summary>How parameters are updated from their gradients.</summary>
/// <param name="Kind">The update rule.</param>
/// <param name="LearningRate">Step size; must be positive and finite.</param>
/// <param name="Momentum">SGD momentum in [0, 1); ignored by the other optimizers.</param>
/// <param name="ClipNorm">Clip by global L2 norm (<c>clip_grad_norm_</c>); 0 = off.</param>
/// <param name="ClipValue">Clamp each gradient element to ±ClipValue (<c>clip_grad_value_</c>); 0 = off. Applied after norm clipping when both are on.</param>
public sealed record OptimizerSettings(OptimizerKind Kind, float LearningRate, float Momentum = 0f, float ClipNorm = 0f, float ClipValue = 0f)
{
    /// <summary>Adam's β1, β2 and ε; RMSprop's α and ε; Adagrad's ε (torch defaults, as Python floats).</summary>
    private const double Beta1 = 0.9, Beta2 = 0.999, AdamEps = 1e-8, RmsAlpha = 0.99, RmsEps = 1e-8, AdagradEps = 1e-10;

    /// <summary>
    /// The kernel scalars of update number <paramref name="step"/> (counting from 1): step-dependent
    /// terms such as Adam's bias corrections are formed in double, each scalar rounded to float once.
    /// <paramref name="learningRate"/> replaces <see cref="LearningRate"/> (a schedule's rate for this step).
    /// </summary>
    public OptimizerArgs ArgsForStep(long step, float? learningRate = null)
    {
        if (step < 1)
            throw new ArgumentOutOfRangeException(nameof(step), step, "optimizer steps count from 1");
        float lr = learningRate ?? LearningRate, norm = ClipNorm, value = ClipValue;
        return Kind switch
        {
            OptimizerKind.Sgd => new OptimizerArgs(lr, Momentum, 0f, 0f, 0f, 0f, 0f, 1f, norm, value),
            OptimizerKind.Adagrad => new OptimizerArgs(lr, 0f, 0f, 0f, 0f, (float)AdagradEps, 0f, 1f, norm, value),
            OptimizerKind.RmsProp => new OptimizerArgs(lr, 0f, 0f, (float)RmsAlpha, (float)(1 - RmsAlpha), (float)RmsEps, 0f, 1f, norm, value),
            OptimizerKind.Adam => new OptimizerArgs(lr, 0f, (float)(1 - Beta1), (float)Beta2, (float)(1 - Beta2), (float)AdamEps,
                (float)(lr / (1 - Math.Pow(Beta1, step))), (float)Math.Sqrt(1 - Math.Pow(Beta2, step)), norm, value),
            _ => throw new ArgumentOutOfRangeException(nameof(Kind), Kind, "unknown optimizer"),
        };
    }

    /// <summary>Number of optimizer state buffers, each as large as the parameters.</summary>
    internal int SlotCount => Kind switch
    {
        OptimizerKind.Sgd => Momentum != 0f ? 1 : 0,
        OptimizerKind.Adagrad => 1,
        OptimizerKind.RmsProp => 1,
        OptimizerKind.Adam => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(Kind), Kind, "unknown optimizer"),
    };

    /// <summary>Names of the state slots as stored in checkpoints (<c>optim.&lt;param&gt;.&lt;slot&gt;</c>), torch's names.</summary>
    public IReadOnlyList<string> SlotNames => Kind switch
    {
        OptimizerKind.Sgd => Momentum != 0f ? ["momentum_buffer"] : [],
        OptimizerKind.Adagrad => ["sum"],
        OptimizerKind.RmsProp => ["square_avg"],
        OptimizerKind.Adam => ["exp_avg", "exp_avg_sq"],
        _ => throw new ArgumentOutOfRangeException(nameof(Kind), Kind, "unknown optimizer"),
    };

    /// <summary>Checks the values; a bad one is named as its property (<see cref="GpuRnnException.Parameter"/>).</summary>
    /// <exception cref="GpuRnnException">A value is out of range.</exception>
    public void Validate()
    {
        if (!(LearningRate > 0f) || !float.IsFinite(LearningRate))
            throw new GpuRnnException(nameof(LearningRate), $"must be a positive finite number (got {LearningRate})");
        if (!(Momentum >= 0f && Momentum < 1f))
            throw new GpuRnnException(nameof(Momentum), $"must be in [0, 1) (got {Momentum})");
        if (!(ClipNorm >= 0f) || !float.IsFinite(ClipNorm))
            throw new GpuRnnException(nameof(ClipNorm), $"must be 0 (off) or a positive finite number (got {ClipNorm})");
        if (!(ClipValue >= 0f) || !float.IsFinite(ClipValue))
            throw new GpuRnnException(nameof(ClipValue), $"must be 0 (off) or a positive finite number (got {ClipValue})");
        _ = SlotCount; // throws on an unknown kind
    }
}
