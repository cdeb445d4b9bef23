using GpuRnn.Kernels;

namespace GpuRnn;

/// <summary>
/// Runs a model without training state (DESIGN.md §3b): evaluation, logits, greedy decoding. Its
/// workspace has no gradient buffers and there is no optimizer; it keeps a state of its own, carried
/// from window to window (reset where a window says so).
/// </summary>
public sealed class Predictor : IDisposable
{
    private readonly RnnModel model;
    private readonly DeviceKernels k;
    private Network? network;

    /// <summary>Inference for <paramref name="model"/>.</summary>
    public Predictor(RnnModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        this.model = model;
        k = model.Device.Kernels;
    }

    /// <summary>Device bytes of the workspace.</summary>
    internal long DeviceBytes => network?.Bytes ?? 0;

    /// <summary>
    /// Mean cross-entropy per predicted token of <paramref name="ids"/> as one stream batched like
    /// training (B, T from the arguments), from a zero state with the state carried across windows.
    /// Returns the mean and the token count.
    /// </summary>
    public (double Loss, long Tokens) Evaluate(int[] ids, int batch, int seqLen)
    {
        var data = new StreamBatcher(ids, batch, seqLen);
        return Evaluate(Enumerable.Range(0, data.WindowsPerEpoch).Select(_ => data.Next()));
    }

    /// <summary>
    /// Mean loss per counted target (tokens for a language model or an encoder–decoder, labels for a
    /// classifier) over <paramref name="windows"/>. Returns the mean and the count.
    /// </summary>
    public (double Loss, long Count) Evaluate(IEnumerable<TokenWindow> windows)
    {
        ArgumentNullException.ThrowIfNull(windows);
        double sum = 0;
        long count = 0;
        Span<float> windowSum = stackalloc float[1];
        foreach (var window in windows)
        {
            var net = Prepare(window);
            count += net.Forward(model, window, withLoss: true);
            net.Carry(k, window.Steps);
            k.Download(net.Scalars.SubView(Network.LossSlot, 1), windowSum);
            sum += windowSum[0];
        }
        return (count > 0 ? sum / count : double.NaN, count);
    }

    /// <summary>
    /// Greedy decoding of an encoder–decoder: the encoder reads <paramref name="source"/>, then the
    /// decoder starts from <paramref name="bos"/> and feeds back its most likely token (never one of
    /// <paramref name="excluded"/>) until <paramref name="eos"/> or <paramref name="maxLength"/>
    /// tokens, all B sequences in step. Returns the tokens of the first <paramref name="count"/>
    /// sequences, without the end token. With <paramref name="firstAttention"/> (a model with attention), the first
    /// sequence's attention weights over the source window's steps are added there, one row per decoded step
    /// (the end token's step included).
    /// </summary>
    public List<int>[] Decode(TokenWindow source, int count, int bos, int eos, int maxLength, IReadOnlyCollection<int> excluded, List<float[]>? firstAttention = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(excluded);
        if (!model.Config.EncoderDecoder)
            throw new InvalidOperationException("Decode needs an encoder–decoder model.");
        int b = source.Batch, v = model.Layout.V;
        if (count < 0 || count > b)
            throw new ArgumentOutOfRangeException(nameof(count), count, $"between 0 and the batch of {b}");
        var step = new TokenWindow(b, 1) { Steps = 1, ResetState = false, Source = source };
        var net = (EncoderDecoderNetwork)Prepare(step);
        net.Encode(model, source);
        var output = Enumerable.Range(0, count).Select(_ => new List<int>()).ToArray();
        var done = new bool[b];
        for (int i = count; i < b; i++)
            done[i] = true; // empty slots of a short last batch
        var previous = new int[b];
        Array.Fill(previous, bos);
        var logits = new float[b * v];
        Array.Fill(step.Targets, -1);
        for (int t = 0; t < maxLength && done.Contains(false); t++)
        {
            for (int i = 0; i < b; i++)
                step.Inputs[i] = done[i] ? -1 : previous[i];
            net.Decode(model, step, withLoss: false);
            net.Carry(k, 1);
            if (firstAttention is not null && !done[0] && net.AttentionWeights is { } attention)
            {
                var row = new float[attention.SourceSteps]; // row t·B + b = 0 of this one-step window
                k.Download(attention.Weights, row);
                firstAttention.Add(row);
            }
            k.Download(net.Logits.SubView(0, (long)b * v), logits);
            for (int i = 0; i < b; i++)
            {
                if (done[i])
                    continue;
                int best = -1;
                for (int c = 0; c < v; c++)
                {
                    if (!excluded.Contains(c) && (best < 0 || logits[i * v + c] > logits[i * v + best]))
                        best = c;
                }
                if (best == eos)
                {
                    done[i] = true;
                    continue;
                }
                output[i].Add(best);
                previous[i] = best;
            }
        }
        return output;
    }

    /// <summary>
    /// Beam search for sequence <paramref name="index"/> of <paramref name="source"/>: <paramref name="beam"/> hypotheses
    /// decoded side by side (the source repeated in a batch of that many), each step extended by every token but
    /// <paramref name="excluded"/> and cut back to the best <paramref name="beam"/> by their summed log-probabilities;
    /// a hypothesis that emits <paramref name="eos"/> is finished. The answer is the finished one (or, when none finished
    /// within <paramref name="maxLength"/> tokens, the live one) with the highest length-normalised score, the mean
    /// log-probability per emitted token (the end token included); returned with that score. A beam of 1 is greedy decoding.
    /// </summary>
    public (List<int> Tokens, double Score) DecodeBeam(TokenWindow source, int index, int beam, int bos, int eos, int maxLength, IReadOnlyCollection<int> excluded)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(excluded);
        if (!model.Config.EncoderDecoder)
            throw new InvalidOperationException("DecodeBeam needs an encoder–decoder model.");
        if (beam < 1)
            throw new ArgumentOutOfRangeException(nameof(beam), beam, "at least 1");
        if (index < 0 || index >= source.Batch)
            throw new ArgumentOutOfRangeException(nameof(index), index, $"between 0 and the batch of {source.Batch}");
        int v = model.Layout.V, length = source.Lengths[index];
        var repeated = new TokenWindow(beam, length) { Steps = length, Padded = true, ResetState = true };
        for (int b = 0; b < beam; b++)
        {
            repeated.Lengths[b] = length;
            for (int t = 0; t < length; t++)
                repeated.Inputs[t * beam + b] = source.Inputs[t * source.Batch + index];
        }
        var step = new TokenWindow(beam, 1) { Steps = 1, ResetState = false, Source = repeated };
        Array.Fill(step.Targets, -1);
        var net = (EncoderDecoderNetwork)Prepare(step);
        net.Encode(model, repeated);
        var live = new List<(List<int> Tokens, double Sum)> { ([], 0) }; // one hypothesis to start: the copies would only tie
        var finished = new List<(List<int> Tokens, double Score)>();
        var logits = new float[beam * v];
        for (int t = 0; t < maxLength && live.Count > 0 && finished.Count < beam; t++)
        {
            for (int b = 0; b < beam; b++)
                step.Inputs[b] = b < live.Count ? (live[b].Tokens.Count > 0 ? live[b].Tokens[^1] : bos) : -1;
            net.Decode(model, step, withLoss: false);
            net.Carry(k, 1);
            k.Download(net.Logits.SubView(0, (long)beam * v), logits);
            var candidates = new List<(int Parent, int Token, double Sum)>();
            for (int b = 0; b < live.Count; b++)
            {
                var row = logits.AsSpan(b * v, v);
                double max = double.NegativeInfinity;
                foreach (float x in row)
                    max = Math.Max(max, x);
                double sum = 0;
                foreach (float x in row)
                    sum += Math.Exp(x - max);
                double logSum = max + Math.Log(sum);
                for (int c = 0; c < v; c++)
                {
                    if (!excluded.Contains(c))
                        candidates.Add((b, c, live[b].Sum + row[c] - logSum));
                }
            }
            // Best first; ties by parent, then token, so the search is deterministic (and a beam of 1 picks greedy's token).
            candidates.Sort((x, y) => y.Sum != x.Sum ? y.Sum.CompareTo(x.Sum) : x.Parent != y.Parent ? x.Parent.CompareTo(y.Parent) : x.Token.CompareTo(y.Token));
            var next = new List<(List<int> Tokens, double Sum)>();
            var parents = new int[beam];
            foreach (var (parent, token, sum) in candidates.Take(beam))
            {
                if (token == eos)
                {
                    finished.Add((live[parent].Tokens, sum / (live[parent].Tokens.Count + 1)));
                    continue;
                }
                parents[next.Count] = parent;
                next.Add(([.. live[parent].Tokens, token], sum));
            }
            net.Stack.GatherState(k, parents);
            live = next;
        }
        foreach (var (tokens, sum) in live)
            finished.Add((tokens, tokens.Count > 0 ? sum / tokens.Count : double.NegativeInfinity));
        return finished.MaxBy(f => f.Score);
    }

    /// <summary>The raw decoder outputs of a classifier window, [B, C] row-major (softmax them for probabilities), from a zero state.</summary>
    public float[] ClassLogits(TokenWindow window)
    {
        ArgumentNullException.ThrowIfNull(window);
        if (!model.Config.IsClassifier)
            throw new InvalidOperationException("ClassLogits needs a classifier model.");
        window.ResetState = true;
        return Logits(window);
    }

    /// <summary>
    /// The raw output-layer values of a window without loss: [s·B, V] time-major for a language model
    /// or an encoder–decoder's decoder, [B, C] for a classifier; the state moves to the window's end.
    /// </summary>
    public float[] Logits(TokenWindow window)
    {
        ArgumentNullException.ThrowIfNull(window);
        Run(window);
        var host = new float[model.Config.IsClassifier ? window.Batch * model.Config.Classes : window.Positions * model.Layout.Outputs];
        k.Download(network!.Logits, host);
        return host;
    }

    /// <summary>Forward without loss over <paramref name="window"/>, then the state moves to its end; the logits stay on the device (<see cref="ReadLogits"/>).</summary>
    internal void Run(TokenWindow window)
    {
        var net = Prepare(window);
        net.Forward(model, window, withLoss: false);
        net.Carry(k, window.Steps);
    }

    /// <summary>Copies the first logits of the last <see cref="Run"/> into <paramref name="target"/>.</summary>
    internal void ReadLogits(Span<float> target) =>
        k.Download((network ?? throw new InvalidOperationException("no window has been run yet.")).Logits, target);

    private Network Prepare(TokenWindow window) => network = Network.Fit(network, model, window, training: false);

    /// <summary>Frees the workspace.</summary>
    public void Dispose() => network?.Dispose();
}
