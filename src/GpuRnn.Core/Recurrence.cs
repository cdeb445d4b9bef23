using GpuRnn.Kernels;

namespace GpuRnn;

/// <summary>
/// How a stack runs the time loop of a layer (DESIGN.md §9). The results are the same within float32
/// rounding (bit for bit on the CPU accelerator); only the launch structure differs.
/// </summary>
public enum Recurrence
{
    /// <summary>The engine's choice, from a GPU measurement (<see cref="RecurrenceNames.Resolve"/>).</summary>
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

    /// <summary>Largest H for which <see cref="Recurrence.Auto"/> picks the fused path on a GPU (see <see cref="Resolve"/>).</summary>
    public const int FusedAutoMaxHidden = 128;

    /// <summary>
    /// The path <paramref name="recurrence"/> runs. <see cref="Recurrence.Auto"/> follows the one GPU measurement
    /// there is (NVIDIA H200, 2026-11-30, B = 64, T = 100, perf/README.md): the fused path was faster for the Elman
    /// cell (3.85 vs 4.38 ms/step) and the GRU (7.20 vs 11.20) at H = 128, slower for the LSTM at H = 128 and for every
    /// cell from H = 256 on (one group per batch row leaves most of the card idle). So: fused on a GPU for Elman and
    /// GRU layers with H ≤ <see cref="FusedAutoMaxHidden"/>, per-step everywhere else (on the CPU accelerator the two
    /// cost the same).
    /// </summary>
    public static Recurrence Resolve(Recurrence recurrence, bool gpu, CellKind cell, int hidden) => recurrence switch
    {
        Recurrence.Auto => gpu && cell != CellKind.Lstm && hidden <= FusedAutoMaxHidden ? Recurrence.Fused : Recurrence.PerStep,
        Recurrence.PerStep or Recurrence.Fused => recurrence,
        _ => throw new ArgumentOutOfRangeException(nameof(recurrence), recurrence, "unknown recurrence"),
    };
}
