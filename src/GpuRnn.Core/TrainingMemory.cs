namespace GpuRnn;

/// <summary>
/// The device memory a training run needs, computed from its sizes before anything is allocated, so
/// that sizes which cannot fit are a one-line error instead of an out-of-memory crash halfway
/// through the allocations. The workspaces are measured by running their own constructors over a
/// counting <see cref="DeviceBuffers"/> (DESIGN.md §4), so the estimate cannot drift from them.
/// </summary>
public static class TrainingMemory
{
    /// <summary>Bytes of parameters [P], gradients [P], optimizer slots [P] each, the training workspace for (B, T) and, with validation, the inference workspace.</summary>
    /// <param name="config">The model sizes V, H, L, the cell and the kind of model.</param>
    /// <param name="batch">B.</param>
    /// <param name="seqLen">T.</param>
    /// <param name="optimizerSlots">Optimizer state buffers as large as the parameters (Adam: 2).</param>
    /// <param name="validation">Whether evaluation windows run (a workspace of their own, without gradients).</param>
    /// <param name="sourceLen">An encoder–decoder's longest source (its encoder's window).</param>
    public static double Bytes(ModelConfig config, int batch, int seqLen, int optimizerSlots, bool validation, int sourceLen = 0)
    {
        ArgumentNullException.ThrowIfNull(config);
        double parameters = ParameterLayout.CountOf(config);
        double workspaces = Network.Measure(config, batch, seqLen, sourceLen, training: true)
            + (validation ? Network.Measure(config, batch, seqLen, sourceLen, training: false) : 0);
        return sizeof(float) * parameters * (2 + optimizerSlots) + workspaces;
    }

    /// <summary>
    /// Throws when a window's buffers would outgrow the kernels' index arithmetic: every buffer is
    /// indexed by 32-bit launch indices (at most 2³¹ − 1 elements) and a GEMM puts ⌈rows / 64⌉ groups
    /// on grid Y, which CUDA caps at 65,535 (so at most 4,194,240 rows, i.e. positions B·T).
    /// </summary>
    /// <exception cref="GpuRnnException">The sizes are beyond those limits; the message names the flags.</exception>
    public static void EnsureIndexable(ModelConfig config, int batch, int seqLen)
    {
        ArgumentNullException.ThrowIfNull(config);
        long positions = (long)batch * seqLen;
        long gates = (long)Kernels.CellShapes.Gates(config.Cell) * config.Hidden; // G: columns of the pre-activations
        long widest = positions * Math.Max(gates, config.Outputs);
        if (positions > 4_194_240 || widest > int.MaxValue || gates * config.Vocab > int.MaxValue)
            throw new GpuRnnException($"B={batch} T={seqLen} H={config.Hidden} V={config.Vocab}: a window of {positions} positions needs buffers of {widest} elements; " +
                "the kernels index at most 2^31 - 1 elements and 4,194,240 positions; lower --batch, --seq-len, --hidden or the vocabulary");
    }

    /// <summary>
    /// Throws when <paramref name="needed"/> bytes exceed what <paramref name="device"/> has: its
    /// memory for a GPU, the host memory available to this process for the CPU accelerator.
    /// </summary>
    /// <exception cref="GpuRnnException">The buffers would not fit; the message says how much is needed and how much there is.</exception>
    public static void EnsureFits(double needed, DeviceInfo device, string sizes)
    {
        ArgumentNullException.ThrowIfNull(device);
        bool host = device.Kind == DeviceKind.Cpu;
        long available = host ? GC.GetGCMemoryInfo().TotalAvailableMemoryBytes : device.MemoryBytes;
        if (available > 0 && needed > available)
        {
            string where = host ? "host memory available" : "device memory";
            throw new GpuRnnException($"{sizes}: training needs {Show(needed)} of buffers but {device.Spec} has {Show(available)} of {where}; lower --hidden, --batch, --seq-len or --layers");
        }
    }

    /// <summary>Bytes as a short human-readable size.</summary>
    public static string Show(double bytes) => bytes switch
    {
        >= 1L << 40 => FormattableString.Invariant($"{bytes / (1L << 40):0.0} TiB"),
        >= 1L << 30 => FormattableString.Invariant($"{bytes / (1L << 30):0.0} GiB"),
        >= 1L << 20 => FormattableString.Invariant($"{bytes / (1L << 20):0.0} MiB"),
        _ => FormattableString.Invariant($"{bytes / 1024:0.0} KiB"),
    };
}
