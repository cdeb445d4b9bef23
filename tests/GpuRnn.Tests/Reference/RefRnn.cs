using GpuRnn.Kernels;

namespace GpuRnn.Tests.Reference;

/// <summary>
/// Result of one reference forward + backward pass.
/// Loss: mean cross-entropy over the non-ignored targets.
/// Grads: d Loss / d parameter, by PyTorch name, same shapes as <see cref="RefModel.Params"/>.
/// HFinal: per layer [B*H], the hidden state after the last time step (a padded row's: after its last true step).
/// Logits: [S, B, V] flattened, TIME-MAJOR (row r = t*B + b), matching the kernel layout.
/// </summary>
public sealed record RefResult(double Loss, Dictionary<string, double[]> Grads, double[][] HFinal, double[] Logits)
{
    /// <summary>Per layer [B*H], the cell state after the last time step (zeros unless the model is an LSTM).</summary>
    public double[][] CFinal { get; init; } = [];
}

/// <summary>
/// Plain-loop double-precision RNN language model (the model's cell: Elman, GRU or LSTM), forward and full
/// backpropagation through time over one window. Per layer k and step t:
///   (h^k_t, c^k_t) = cell(W_ih^k x^k_t + b_ih^k, W_hh^k h^k_{t-1} + b_hh^k, h^k_{t-1}, c^k_{t-1}),
///   x^0_t = onehot(token), x^k_t = h^{k-1}_t (see <see cref="RefCell"/>; Elman: h = tanh(sum))
///   logits_t = W_dec h^{L-1}_t + b_dec
///   Loss = mean over targets >= 0 of -log softmax(logits_t)[target].
/// Every row runs the same <see cref="RefStack"/>. The initial states h0 (c0) are constants (no gradient flows
/// into them), exactly like a state carried across windows with <c>.detach()</c> in PyTorch. With lengths, row b
/// holds its state from step lengths[b] on (DESIGN.md §6).
/// If every target is ignored the loss is defined as 0 with zero gradients (PyTorch would return NaN);
/// that case never arises for stream windows.
/// </summary>
public static class RefRnn
{
    /// <param name="drop">Dropout: drop(b, k, t) are the factors [H] of row b's layer k output at step t (null: none).</param>
    public static RefResult ForwardBackward(RefModel m, int[,] inputs, int[,] targets, double[][]? h0 = null, double[][]? c0 = null, int[]? lengths = null,
        Func<int, int, int, double[]?>? drop = null)
    {
        var (batch, steps) = CheckArgs(m, inputs, targets, h0, c0, lengths);
        int vocab = m.V, hidden = m.H;
        var stack = Stack(m);
        var runs = Forward(m, stack, inputs, h0, c0, lengths, drop); // one per row
        double[] logits = Logits(m, runs, steps);              // [S, B, V]
        int[] tgt = TimeMajorTargets(targets, batch, steps);   // [S*B]

        int count = CountTargets(tgt);
        // Mean over the counted targets: every row's dlogits carries the same 1/count factor.
        double scale = count > 0 ? 1.0 / count : 0.0;
        var (rowLoss, dLogits) = RefOps.SoftmaxCrossEntropy(logits, steps * batch, vocab, tgt, scale); // [S*B], [S*B, V]
        double loss = 0;
        foreach (double l in rowLoss) loss += l;
        loss *= scale;

        var grads = new Dictionary<string, double[]>();
        foreach (var (name, shape) in RefModel.Layout(vocab, hidden, m.L, m.Cell))
        {
            grads[name] = new double[RefModel.Count(shape)];
        }

        // ---- decoder: logits_r = W_dec h_r + b_dec for every row r = t*B + b ----
        double[] decW = m.Params["decoder.weight"]; // [V, H]
        double[] dDecW = grads["decoder.weight"];   // [V, H]
        double[] dDecB = grads["decoder.bias"];     // [V]
        var dTop = runs.Select(_ => Enumerable.Range(0, steps).Select(_ => new double[hidden]).ToArray()).ToArray(); // [B][S][H] dLoss/dh of the top layer
        for (int r = 0; r < steps * batch; r++)
        {
            int t = r / batch, b = r % batch;
            double[] h = runs[b].TopOutput(t);
            for (int v = 0; v < vocab; v++)
            {
                double g = dLogits[r * vocab + v];
                dDecB[v] += g;
                for (int j = 0; j < hidden; j++)
                {
                    dDecW[v * hidden + j] += g * h[j];
                    dTop[b][t][j] += decW[v * hidden + j] * g;
                }
            }
        }

        // ---- the stack of each row, backpropagated through time; the carried-in h0 (c0) gets no gradient ----
        for (int b = 0; b < batch; b++)
            stack.Backward(m.Params, grads, runs[b], dTop[b]);

        return new RefResult(loss, grads, FinalStates(runs, m.L, hidden, run => run.FinalH), logits)
        {
            CFinal = FinalStates(runs, m.L, hidden, run => run.FinalC),
        };
    }

    /// <summary>Forward pass only; the same loss as <see cref="ForwardBackward"/>.</summary>
    public static double Loss(RefModel m, int[,] inputs, int[,] targets, double[][]? h0 = null, double[][]? c0 = null, int[]? lengths = null,
        Func<int, int, int, double[]?>? drop = null)
    {
        var (batch, steps) = CheckArgs(m, inputs, targets, h0, c0, lengths);
        var runs = Forward(m, Stack(m), inputs, h0, c0, lengths, drop);
        double[] logits = Logits(m, runs, steps);             // [S, B, V]
        int[] tgt = TimeMajorTargets(targets, batch, steps);  // [S*B]
        int count = CountTargets(tgt);
        if (count == 0) return 0.0;
        var (rowLoss, _) = RefOps.SoftmaxCrossEntropy(logits, steps * batch, m.V, tgt, 0.0);
        double loss = 0;
        foreach (double l in rowLoss) loss += l;
        return loss / count;
    }

    private static RefStack Stack(RefModel m) => new(m.Cell, "rnn.", m.V, m.H, m.L);

    /// <summary>Runs every row b of inputs [B, S] through the stack from its slice of h0 (c0) [L][B*H].</summary>
    private static RefStackRun[] Forward(RefModel m, RefStack stack, int[,] inputs, double[][]? h0, double[][]? c0, int[]? lengths, Func<int, int, int, double[]?>? drop = null)
    {
        int batch = inputs.GetLength(0), steps = inputs.GetLength(1), hidden = m.H;
        double[][]? Row(double[][]? state, int b) => state?.Select(layer => layer.AsSpan(b * hidden, hidden).ToArray()).ToArray();
        return Enumerable.Range(0, batch)
            .Select(b => stack.Forward(m.Params, Enumerable.Range(0, steps).Select(t => inputs[b, t]).ToArray(), Row(h0, b), Row(c0, b), lengths?[b],
                drop is null ? null : (k, t) => drop(b, k, t)))
            .ToArray();
    }

    /// <summary>logits [S, B, V] from the top layer's states of every row.</summary>
    private static double[] Logits(RefModel m, RefStackRun[] runs, int steps)
    {
        int vocab = m.V, hidden = m.H, batch = runs.Length;
        double[] w = m.Params["decoder.weight"]; // [V, H]
        double[] bias = m.Params["decoder.bias"]; // [V]
        double[] logits = new double[steps * batch * vocab];
        for (int r = 0; r < steps * batch; r++)
        {
            double[] h = runs[r % batch].TopOutput(r / batch);
            for (int v = 0; v < vocab; v++)
            {
                double z = bias[v];
                for (int j = 0; j < hidden; j++) z += w[v * hidden + j] * h[j];
                logits[r * vocab + v] = z;
            }
        }
        return logits;
    }

    /// <summary>Per layer [B*H]: each row's final state, picked by <paramref name="state"/> (h or c).</summary>
    private static double[][] FinalStates(RefStackRun[] runs, int layers, int hidden, Func<RefStackRun, Func<int, double[]>> state)
    {
        var result = new double[layers][];
        for (int k = 0; k < layers; k++)
        {
            result[k] = new double[runs.Length * hidden]; // [B, H]
            for (int b = 0; b < runs.Length; b++)
                state(runs[b])(k).CopyTo(result[k], b * hidden);
        }
        return result;
    }

    /// <summary>targets [B, S] to time-major [S*B] so row r = t*B + b lines up with the logits.</summary>
    private static int[] TimeMajorTargets(int[,] targets, int batch, int steps)
    {
        var tgt = new int[steps * batch];
        for (int t = 0; t < steps; t++)
            for (int b = 0; b < batch; b++)
                tgt[t * batch + b] = targets[b, t];
        return tgt;
    }

    private static int CountTargets(int[] tgt)
    {
        int n = 0;
        foreach (int y in tgt) if (y >= 0) n++;
        return n;
    }

    private static (int Batch, int Steps) CheckArgs(RefModel m, int[,] inputs, int[,] targets, double[][]? h0, double[][]? c0, int[]? lengths)
    {
        ArgumentNullException.ThrowIfNull(m);
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(targets);
        int batch = inputs.GetLength(0), steps = inputs.GetLength(1);
        if (targets.GetLength(0) != batch || targets.GetLength(1) != steps)
            throw new ArgumentException("targets must have the shape of inputs [B, S]", nameof(targets));
        for (int b = 0; b < batch; b++)
        {
            for (int t = 0; t < steps; t++)
            {
                if (inputs[b, t] < 0 || inputs[b, t] >= m.V)
                    throw new ArgumentOutOfRangeException(nameof(inputs), $"token {inputs[b, t]} at [{b},{t}] is outside [0, {m.V})");
                if (targets[b, t] >= m.V)
                    throw new ArgumentOutOfRangeException(nameof(targets), $"target {targets[b, t]} at [{b},{t}] is >= V = {m.V}");
            }
        }
        CheckState(h0, m.L, batch * m.H, nameof(h0));
        CheckState(c0, m.L, batch * m.H, nameof(c0));
        if (lengths != null && (lengths.Length != batch || lengths.Any(n => n < 0 || n > steps)))
            throw new ArgumentException($"lengths needs B = {batch} values in [0, {steps}]", nameof(lengths));
        return (batch, steps);
    }

    private static void CheckState(double[][]? state, int layers, int size, string name)
    {
        if (state == null)
            return;
        if (state.Length != layers) throw new ArgumentException($"{name} needs {layers} layers", name);
        foreach (double[] layer in state)
        {
            if (layer.Length != size) throw new ArgumentException($"each {name} layer needs B*H = {size} values", name);
        }
    }
}
