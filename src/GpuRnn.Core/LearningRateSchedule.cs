namespace GpuRnn;

/// <summary>How the learning rate changes over a run.</summary>
public enum ScheduleKind
{
    /// <summary>The base rate throughout.</summary>
    Constant,
    /// <summary>char-rnn's step decay: after <see cref="LearningRateSchedule.DecayAfter"/> updates, × decay every <see cref="LearningRateSchedule.DecayEvery"/> updates.</summary>
    Step,
    /// <summary>Cosine annealing from the base rate to the minimum over the planned updates (<c>CosineAnnealingLR</c> with T_max = the run's steps).</summary>
    Cosine,
    /// <summary>Reduce on plateau of the validation loss (<c>ReduceLROnPlateau</c>, threshold 0, cooldown 0): × decay after more than <see cref="LearningRateSchedule.Patience"/> evaluations without a new best.</summary>
    Plateau,
}

/// <summary>
/// A learning-rate schedule. The rate of update n (counting from 1) is a function of n, the planned updates and, for
/// <see cref="ScheduleKind.Plateau"/>, the number of reductions so far, formed in double and rounded to float once, so a
/// resumed run (which restores the step and the reductions from the checkpoint) uses exactly the rates of an unbroken one.
/// Every schedule stays at or above <see cref="Min"/> (and never rises above the base rate).
/// </summary>
/// <param name="Kind">The schedule.</param>
/// <param name="Decay">Step and plateau: the factor in (0, 1) of each decay.</param>
/// <param name="DecayAfter">Step: updates at the base rate before the first decay.</param>
/// <param name="DecayEvery">Step: updates between decays (≥ 1).</param>
/// <param name="Min">The floor (cosine: the final rate); ≥ 0.</param>
/// <param name="Patience">Plateau: evaluations without improvement tolerated before a reduction.</param>
/// <param name="Horizon">Cosine: the planned updates the cosine spans (the run's total, fixed when the run starts).</param>
public sealed record LearningRateSchedule(ScheduleKind Kind, double Decay = 0.97, long DecayAfter = 0, long DecayEvery = 1, double Min = 0, int Patience = 3, long Horizon = 1)
{
    /// <summary>The base rate throughout.</summary>
    public static LearningRateSchedule Constant { get; } = new(ScheduleKind.Constant);

    /// <summary>The rate of update <paramref name="update"/> (from 1) from <paramref name="baseRate"/>, after <paramref name="reductions"/> plateau reductions.</summary>
    public float Rate(float baseRate, long update, int reductions)
    {
        double lr = baseRate;
        switch (Kind)
        {
            case ScheduleKind.Constant:
                return baseRate;
            case ScheduleKind.Step:
                long decays = update > DecayAfter ? (update - 1 - DecayAfter) / DecayEvery + 1 : 0;
                lr *= Math.Pow(Decay, decays);
                break;
            case ScheduleKind.Cosine:
                double progress = Math.Min(1.0, (update - 1) / (double)Horizon);
                lr = Min + (lr - Min) * (1 + Math.Cos(Math.PI * progress)) / 2;
                break;
            case ScheduleKind.Plateau:
                lr *= Math.Pow(Decay, reductions);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(Kind), Kind, "unknown schedule");
        }
        return (float)Math.Max(Math.Min(lr, baseRate), Math.Min(Min, baseRate));
    }

    /// <summary>
    /// Plateau: whether the evaluation that leaves <paramref name="evaluationsSinceBest"/> evaluations without a new best
    /// reduces the rate (every time the count passes another <see cref="Patience"/> + 1). Other schedules: never.
    /// </summary>
    public bool ReducesAfter(int evaluationsSinceBest) => Kind == ScheduleKind.Plateau && evaluationsSinceBest > 0 && evaluationsSinceBest % (Patience + 1) == 0;

    /// <summary>The schedule in words, with its flags' values.</summary>
    public override string ToString() => Kind switch
    {
        ScheduleKind.Step => FormattableString.Invariant($"step: × {Decay} every {DecayEvery} steps after step {DecayAfter}, at least {Min}"),
        ScheduleKind.Cosine => FormattableString.Invariant($"cosine: to {Min} over {Horizon} steps"),
        ScheduleKind.Plateau => FormattableString.Invariant($"plateau: × {Decay} after more than {Patience} validations without a new best, at least {Min}"),
        _ => Name(Kind),
    };

    /// <summary>Checks the values; a bad one is named as its command-line flag.</summary>
    /// <exception cref="GpuRnnException">A value is out of range.</exception>
    public void Validate()
    {
        if (Kind is ScheduleKind.Step or ScheduleKind.Plateau && !(Decay > 0 && Decay < 1))
            throw new GpuRnnException($"--lr-decay must be in (0, 1) (got {Decay})");
        if (DecayAfter < 0)
            throw new GpuRnnException($"--lr-decay-after must be 0 or positive (got {DecayAfter})");
        if (DecayEvery < 1)
            throw new GpuRnnException($"--lr-decay-every must be a positive integer (got {DecayEvery})");
        if (!(Min >= 0) || !double.IsFinite(Min))
            throw new GpuRnnException($"--lr-min must be 0 or a positive finite number (got {Min})");
        if (Patience < 0)
            throw new GpuRnnException($"--plateau-patience must be 0 or positive (got {Patience})");
        if (Horizon < 1)
            throw new GpuRnnException($"--cosine-steps must be a positive integer (got {Horizon})");
    }

    /// <summary>The command-line name of a schedule.</summary>
    public static string Name(ScheduleKind kind) => kind switch
    {
        ScheduleKind.Constant => "constant",
        ScheduleKind.Step => "step",
        ScheduleKind.Cosine => "cosine",
        ScheduleKind.Plateau => "plateau",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown schedule"),
    };

    /// <summary>The schedule of a command-line name.</summary>
    /// <exception cref="GpuRnnException">Unknown name.</exception>
    public static ScheduleKind Parse(string name) => name switch
    {
        "constant" => ScheduleKind.Constant,
        "step" => ScheduleKind.Step,
        "cosine" => ScheduleKind.Cosine,
        "plateau" => ScheduleKind.Plateau,
        _ => throw new GpuRnnException($"--lr-schedule {name}: use constant, step, cosine or plateau"),
    };
}
