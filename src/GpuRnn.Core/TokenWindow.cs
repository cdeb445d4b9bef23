namespace GpuRnn;

/// <summary>
/// One training window of B parallel sequences and s ≤ capacity time steps, time-major:
/// position p = t·B + b. Reused from step to step so that the training loop allocates nothing.
/// </summary>
public sealed class TokenWindow
{
    /// <summary>A window of <paramref name="batch"/> sequences with room for <paramref name="capacity"/> steps.</summary>
    public TokenWindow(int batch, int capacity)
    {
        if (batch < 1)
            throw new GpuRnnException(nameof(batch), $"must be at least 1 (got {batch})");
        if (capacity < 1)
            throw new GpuRnnException("seqLen", $"must be at least 1 (got {capacity})");
        if ((long)batch * capacity > int.MaxValue / 2)
            throw new GpuRnnException($"a batch of {batch} × {capacity} steps = {(long)batch * capacity} positions; at most {int.MaxValue / 2} fit one window");
        Batch = batch;
        Capacity = capacity;
        Inputs = new int[batch * capacity];
        Targets = new int[batch * capacity];
        Lengths = new int[batch];
        Labels = new int[batch];
    }

    /// <summary>B, the number of parallel sequences.</summary>
    public int Batch { get; }

    /// <summary>The most time steps a window can hold (T).</summary>
    public int Capacity { get; }

    /// <summary>s, the time steps this window holds (1 ≤ s ≤ T).</summary>
    public int Steps { get; set; }

    /// <summary>Input ids [T, B] time-major; the first s·B are valid.</summary>
    public int[] Inputs { get; }

    /// <summary>Target ids [T, B] time-major; a negative target is ignored (no loss, no gradient).</summary>
    public int[] Targets { get; }

    /// <summary>True length of each sequence [B] (1 ≤ length ≤ s), used by a classifier to read each sequence's last true state.</summary>
    public int[] Lengths { get; }

    /// <summary>Class of each sequence [B] (classifier windows).</summary>
    public int[] Labels { get; }

    /// <summary>
    /// True for a padded batch of whole sequences: each sequence's state is held past its
    /// <see cref="Lengths"/> (DESIGN.md §6). False for stream windows, where every position is real.
    /// </summary>
    public bool Padded { get; set; }

    /// <summary>For an encoder–decoder: the source window the encoder reads (inputs and lengths); this window is then the decoder's, teacher-forced.</summary>
    public TokenWindow? Source { get; set; }

    /// <summary>True when the hidden state must start from zero (first window of an epoch) instead of being carried.</summary>
    public bool ResetState { get; set; }

    /// <summary>Number of valid positions, s·B.</summary>
    public int Positions => Steps * Batch;
}
