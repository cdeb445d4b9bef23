namespace GpuRnn.Tests.Reference;

/// <summary>
/// Stream batching of DESIGN.md section 6 (PyTorch word_language_model's batchify + get_batch),
/// written out with plain indices.
/// </summary>
public static class RefStream
{
    /// <summary>
    /// n = len / B (the tail that does not fill a stream is dropped); stream b = ids[b*n .. (b+1)*n).
    /// Windows start at i = 0, T, 2T, ... while i &lt; n - 1, with s = min(T, n - 1 - i) steps:
    /// inputs [B, s] = stream[:, i .. i+s), targets [B, s] = stream[:, i+1 .. i+1+s) (the next token).
    /// </summary>
    public static IReadOnlyList<(int[,] Inputs, int[,] Targets)> Windows(int[] ids, int batch, int seqLen)
    {
        ArgumentNullException.ThrowIfNull(ids);
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch));
        if (seqLen < 1) throw new ArgumentOutOfRangeException(nameof(seqLen));

        int n = ids.Length / batch; // tokens per stream
        var windows = new List<(int[,], int[,])>();
        for (int i = 0; i < n - 1; i += seqLen)
        {
            int s = Math.Min(seqLen, n - 1 - i); // the last window may be short: its targets must exist
            var inputs = new int[batch, s];  // [B, s]
            var targets = new int[batch, s]; // [B, s]
            for (int b = 0; b < batch; b++)
            {
                for (int t = 0; t < s; t++)
                {
                    inputs[b, t] = ids[b * n + i + t];
                    targets[b, t] = ids[b * n + i + t + 1];
                }
            }
            windows.Add((inputs, targets));
        }
        return windows;
    }
}
