namespace GpuRnn;

/// <summary>
/// The device memory a training run needs, computed from its sizes before anything is allocated, so
/// that sizes which cannot fit are a one-line error instead of an out-of-memory crash halfway
/// through the allocations. Mirrors the buffers of <see cref="RnnModel"/>, <see cref="Trainer"/> and
/// its activations (DESIGN.md §2, §4); counted in double so that absurd sizes cannot overflow.
/// </summary>
public static class TrainingMemory
{
    /// <summary>Bytes of parameters [P], gradients [P], optimizer slots [P] each, and one or two sets of activations for (B, T).</summary>
    /// <param name="config">The model sizes V, H, L.</param>
    /// <param name="batch">B.</param>
    /// <param name="seqLen">T.</param>
    /// <param name="optimizerSlots">Optimizer state buffers as large as the parameters (Adam: 2).</param>
    /// <param name="validation">Whether evaluation windows get activations of their own (a second set).</param>
    /// <param name="sourceLen">An encoder–decoder's longest source (its encoder's activations).</param>
    public static double Bytes(ModelConfig config, int batch, int seqLen, int optimizerSlots, bool validation, int sourceLen = 0)
    {
        ArgumentNullException.ThrowIfNull(config);
        double v = config.Vocab, o = config.Outputs /* decoder rows: V, or C for a classifier */, h = config.Hidden, l = config.Layers, b = batch;
        double stacks = config.EncoderDecoder ? 2 : 1;
        double parameters = stacks * (h * v + (2 * l - 1) * h * h + 2 * l * h) + o * h + o; // per stack W_ih l0 [H, V], W_ih above [H, H], W_hh [H, H], biases; output [O, H] + [O]
        double Activations(double t, bool encoder)
        {
            double p = b * t; // positions of one window
            return sizeof(int) * (3 * p + v + 1 + 3 * b)  // ids, targets, token positions [T·B]; token offsets [V + 1]; last rows, labels, lengths [B]
                + sizeof(float) * (3 * p * h               // X, dH, dZ [T, B, H]
                    + l * (t + 1) * b * h                  // hidden states [L][T + 1, B, H]
                    + (encoder ? 1 : (config.IsClassifier ? b : p) * o) // logits / dlogits: [T, B, V], [B, C] for a classifier, none for an encoder
                    + 2 * b * h                            // last true state and its gradient [B, H]
                    + l * b * h                            // gradient w.r.t. each layer's h_0 [L, B, H]
                    + p + 2);                              // per-row loss, scalars
        }
        // Training and (with validation) evaluation windows each have a set; an encoder adds one for the source.
        double activations = Activations(seqLen, false) * (validation ? 2 : 1) + (config.EncoderDecoder ? Activations(sourceLen, true) : 0);
        return sizeof(float) * parameters * (2 + optimizerSlots) + activations;
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
        long widest = positions * Math.Max(config.Hidden, config.Outputs);
        if (positions > 4_194_240 || widest > int.MaxValue || (long)config.Hidden * config.Vocab > int.MaxValue)
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
