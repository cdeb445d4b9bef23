namespace GpuRnn;

/// <summary>
/// How a stack runs the time loop of a layer (DESIGN.md §9). The results are the same within float32
/// rounding (bit for bit on the CPU accelerator); only the launch structure differs.
/// </summary>
public enum Recurrence
{
    /// <summary>The engine's choice: <see cref="PerStep"/> until a GPU measurement says otherwise.</summary>
    Auto = 0,

    /// <summary>One launch per time step, layer and direction (the recurrent GEMM with the cell as its epilogue).</summary>
    PerStep = 1,

    /// <summary>One launch per layer and direction for all T steps: each group owns whole batch rows and runs the time loop with group barriers.</summary>
    Fused = 2,
}

/// <summary>Names of <see cref="Recurrence"/> as the runners spell them.</summary>
public static class RecurrenceNames
{
    /// <summary>"auto", "per-step" or "fused".</summary>
    public static string Name(Recurrence recurrence) => recurrence switch
    {
        Recurrence.Auto => "auto",
        Recurrence.PerStep => "per-step",
        Recurrence.Fused => "fused",
        _ => throw new ArgumentOutOfRangeException(nameof(recurrence), recurrence, "unknown recurrence"),
    };

    /// <summary>Parses "auto", "per-step" or "fused"; null for anything else.</summary>
    public static Recurrence? Parse(string name) => name switch
    {
        "auto" => Recurrence.Auto,
        "per-step" => Recurrence.PerStep,
        "fused" => Recurrence.Fused,
        _ => null,
    };

    /// <summary>The path <paramref name="recurrence"/> runs: <see cref="Recurrence.Auto"/> is <see cref="Recurrence.PerStep"/> (no GPU measurement has favoured the fused path yet).</summary>
    public static Recurrence Resolve(Recurrence recurrence) => recurrence switch
    {
        Recurrence.Auto => Recurrence.PerStep,
        Recurrence.PerStep or Recurrence.Fused => recurrence,
        _ => throw new ArgumentOutOfRangeException(nameof(recurrence), recurrence, "unknown recurrence"),
    };
}
