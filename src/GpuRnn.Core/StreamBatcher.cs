namespace GpuRnn;

/// <summary>
/// Continuous-text batching exactly as DESIGN.md §6 (PyTorch's word_language_model):
/// n = len / B, stream b is ids[b·n, (b+1)·n); window i runs over i = 0, T, 2T, … while i &lt; n − 1
/// with s = min(T, n − 1 − i), inputs [:, i, i+s), targets [:, i+1, i+1+s). A step is one window;
/// past the last window a new epoch starts, with the hidden state reset.
/// </summary>
public sealed class StreamBatcher : ITrainingData
{
    private readonly int[] ids;
    private readonly TokenWindow window;

    /// <summary>Batches <paramref name="ids"/> into B streams and windows of at most T steps.</summary>
    /// <exception cref="GpuRnnException">Too little data for even one window.</exception>
    public StreamBatcher(int[] ids, int batch, int seqLen)
    {
        ArgumentNullException.ThrowIfNull(ids);
        if (batch < 1)
            throw new GpuRnnException(nameof(batch), $"must be at least 1 (got {batch})");
        if (seqLen < 1)
            throw new GpuRnnException(nameof(seqLen), $"must be at least 1 (got {seqLen})");
        StreamLength = ids.Length / batch;
        if (StreamLength < 2)
            throw new GpuRnnException($"the data has {ids.Length} tokens; a batch of {batch} streams needs at least {2L * batch} (2 per stream)");
        // A window never needs more steps than a stream has targets: no buffer beyond the data.
        window = new TokenWindow(batch, Math.Min(seqLen, StreamLength - 1));
        this.ids = ids;
    }

    /// <summary>n, the tokens per stream (the remainder of len / B is dropped).</summary>
    public int StreamLength { get; }

    /// <summary>Windows per epoch.</summary>
    public int WindowsPerEpoch => (StreamLength - 1 + window.Capacity - 1) / window.Capacity;

    /// <inheritdoc/>
    public int StepsPerEpoch => WindowsPerEpoch;

    /// <summary>Completed epochs.</summary>
    public int Epoch { get; private set; }

    /// <summary>Start i of the next window within the streams.</summary>
    public int Position { get; private set; }

    /// <summary>Moves to a saved position (for resuming): the next window starts at <paramref name="position"/> of epoch <paramref name="epoch"/>.</summary>
    public void Seek(int epoch, int position)
    {
        if (epoch < 0 || position < 0 || position >= StreamLength - 1 || position % window.Capacity != 0)
            throw new GpuRnnException($"data position {position} of epoch {epoch} is not a window start of this data");
        Epoch = epoch;
        Position = position;
    }

    /// <summary>Fills and returns the next window (the same object every call).</summary>
    public TokenWindow Next()
    {
        int b = window.Batch, n = StreamLength, i = Position;
        int s = Math.Min(window.Capacity, n - 1 - i);
        for (int t = 0; t < s; t++)
        {
            for (int k = 0; k < b; k++)
            {
                int at = k * n + i + t;
                window.Inputs[t * b + k] = ids[at];
                window.Targets[t * b + k] = ids[at + 1];
            }
        }
        window.Steps = s;
        window.ResetState = i == 0;
        Position = i + s;
        if (Position >= n - 1)
        {
            Position = 0;
            Epoch++;
        }
        return window;
    }
}
