namespace GpuRnn.Tests.Reference;

/// <summary>
/// Result of one reference forward + backward pass.
/// Loss: mean cross-entropy over the non-ignored targets.
/// Grads: d Loss / d parameter, by PyTorch name, same shapes as <see cref="RefModel.Params"/>.
/// HFinal: per layer [B*H], the hidden state after the last time step.
/// Logits: [S, B, V] flattened, TIME-MAJOR (row r = t*B + b), matching the kernel layout.
/// </summary>
public sealed record RefResult(double Loss, Dictionary<string, double[]> Grads, double[][] HFinal, double[] Logits);

/// <summary>
/// Plain-loop double-precision Elman RNN language model (tanh), forward and full backpropagation
/// through time over one window. Equations, per layer k and step t:
///   h^k_t = tanh(W_ih^k x^k_t + b_ih^k + W_hh^k h^k_{t-1} + b_hh^k),  x^0_t = onehot(token), x^k_t = h^{k-1}_t
///   logits_t = W_dec h^{L-1}_t + b_dec
///   Loss = mean over targets >= 0 of -log softmax(logits_t)[target].
/// The initial state h0 is a constant (no gradient flows into it), exactly like a state carried
/// across windows with <c>.detach()</c> in PyTorch.
/// If every target is ignored the loss is defined as 0 with zero gradients (PyTorch would return NaN);
/// that case never arises for stream windows.
/// </summary>
public static class RefRnn
{
    public static RefResult ForwardBackward(RefModel m, int[,] inputs, int[,] targets, double[][]? h0 = null)
    {
        var (batch, steps) = CheckArgs(m, inputs, targets, h0);
        int vocab = m.V, hidden = m.H, layers = m.L;

        double[][] hs = Forward(m, inputs, h0, batch, steps); // per layer [S+1, B, H]
        double[] logits = Logits(m, hs[layers - 1], batch, steps); // [S, B, V]
        int[] tgt = TimeMajorTargets(targets, batch, steps); // [S*B]

        int count = CountTargets(tgt);
        // Mean over the counted targets: every row's dlogits carries the same 1/count factor.
        double scale = count > 0 ? 1.0 / count : 0.0;
        var (rowLoss, dLogits) = RefOps.SoftmaxCrossEntropy(logits, steps * batch, vocab, tgt, scale); // [S*B], [S*B, V]
        double loss = 0;
        foreach (double l in rowLoss) loss += l;
        loss *= scale;

        var grads = new Dictionary<string, double[]>();
        foreach (var (name, shape) in RefModel.Layout(vocab, hidden, layers))
        {
            grads[name] = new double[RefModel.Count(shape)];
        }

        // ---- decoder: logits_r = W_dec h_r + b_dec for every row r = t*B + b ----
        double[] decW = m.Params["decoder.weight"]; // [V, H]
        double[] dDecW = grads["decoder.weight"];   // [V, H]
        double[] dDecB = grads["decoder.bias"];     // [V]
        double[] hTop = hs[layers - 1];             // [S+1, B, H]; row r of step t is at offset (r + B)*H
        double[] dhAbove = new double[steps * batch * hidden]; // [S, B, H] dLoss/dh of the current layer from above
        for (int r = 0; r < steps * batch; r++)
        {
            int hOff = (r + batch) * hidden; // h_t lives at time index t+1 (index 0 is h0)
            for (int v = 0; v < vocab; v++)
            {
                double g = dLogits[r * vocab + v];
                dDecB[v] += g;
                for (int j = 0; j < hidden; j++)
                {
                    dDecW[v * hidden + j] += g * hTop[hOff + j];
                    dhAbove[r * hidden + j] += decW[v * hidden + j] * g;
                }
            }
        }

        // ---- layers, top to bottom; each one backpropagated through time, last step first ----
        for (int k = layers - 1; k >= 0; k--)
        {
            double[] wIh = m.Params[$"rnn.weight_ih_l{k}"]; // [H, V] for k = 0, [H, H] above
            double[] wHh = m.Params[$"rnn.weight_hh_l{k}"]; // [H, H]
            double[] dWIh = grads[$"rnn.weight_ih_l{k}"];
            double[] dWHh = grads[$"rnn.weight_hh_l{k}"];
            double[] dBIh = grads[$"rnn.bias_ih_l{k}"]; // [H]
            double[] dBHh = grads[$"rnn.bias_hh_l{k}"]; // [H]
            double[] h = hs[k];                          // [S+1, B, H]
            double[] hBelow = k > 0 ? hs[k - 1] : [];    // [S+1, B, H] this layer's input for k > 0
            // dLoss/dh of the layer below, through this layer's W_ih (only needed for k > 0).
            double[] dhBelow = k > 0 ? new double[steps * batch * hidden] : []; // [S, B, H]
            // dLoss/dh_t that arrives from step t+1 through W_hh; zero after the last step.
            double[] dhNext = new double[batch * hidden]; // [B, H]
            double[] dz = new double[batch * hidden];     // [B, H] dLoss/d(pre-activation) at step t

            for (int t = steps - 1; t >= 0; t--)
            {
                for (int b = 0; b < batch; b++)
                {
                    for (int i = 0; i < hidden; i++)
                    {
                        double ht = h[((t + 1) * batch + b) * hidden + i];
                        double dh = dhAbove[(t * batch + b) * hidden + i] + dhNext[b * hidden + i];
                        dz[b * hidden + i] = dh * (1.0 - ht * ht); // tanh' = 1 - tanh^2
                    }
                }

                for (int b = 0; b < batch; b++)
                {
                    int prevOff = (t * batch + b) * hidden;        // h_{t-1} of this layer
                    int inOff = ((t + 1) * batch + b) * hidden;    // h_t of the layer below
                    int token = inputs[b, t];
                    for (int i = 0; i < hidden; i++)
                    {
                        double g = dz[b * hidden + i];
                        dBIh[i] += g;
                        dBHh[i] += g;
                        for (int j = 0; j < hidden; j++)
                        {
                            dWHh[i * hidden + j] += g * h[prevOff + j];
                        }
                        if (k == 0)
                        {
                            // One-hot input: only the token's column of W_ih receives gradient.
                            dWIh[i * vocab + token] += g;
                        }
                        else
                        {
                            for (int j = 0; j < hidden; j++)
                            {
                                dWIh[i * hidden + j] += g * hBelow[inOff + j];
                                dhBelow[(t * batch + b) * hidden + j] += wIh[i * hidden + j] * g;
                            }
                        }
                    }
                }

                // Carry to step t-1: dh_{t-1} += W_hh^T dz_t. Step 0's carry would go into h0: dropped.
                Array.Clear(dhNext);
                for (int b = 0; b < batch; b++)
                {
                    for (int i = 0; i < hidden; i++)
                    {
                        double g = dz[b * hidden + i];
                        for (int j = 0; j < hidden; j++)
                        {
                            dhNext[b * hidden + j] += wHh[i * hidden + j] * g;
                        }
                    }
                }
            }
            dhAbove = dhBelow;
        }

        return new RefResult(loss, grads, FinalStates(hs, batch, steps, hidden), logits);
    }

    /// <summary>Forward pass only; the same loss as <see cref="ForwardBackward"/>.</summary>
    public static double Loss(RefModel m, int[,] inputs, int[,] targets, double[][]? h0 = null)
    {
        var (batch, steps) = CheckArgs(m, inputs, targets, h0);
        double[][] hs = Forward(m, inputs, h0, batch, steps);
        double[] logits = Logits(m, hs[m.L - 1], batch, steps); // [S, B, V]
        int[] tgt = TimeMajorTargets(targets, batch, steps);    // [S*B]
        int count = CountTargets(tgt);
        if (count == 0) return 0.0;
        var (rowLoss, _) = RefOps.SoftmaxCrossEntropy(logits, steps * batch, m.V, tgt, 0.0);
        double loss = 0;
        foreach (double l in rowLoss) loss += l;
        return loss / count;
    }

    /// <summary>Hidden states of every layer, per layer [S+1, B, H]; time index 0 holds h0.</summary>
    private static double[][] Forward(RefModel m, int[,] inputs, double[][]? h0, int batch, int steps)
    {
        int vocab = m.V, hidden = m.H, layers = m.L;
        var hs = new double[layers][];
        for (int k = 0; k < layers; k++)
        {
            double[] wIh = m.Params[$"rnn.weight_ih_l{k}"]; // [H, V] for k = 0, [H, H] above
            double[] wHh = m.Params[$"rnn.weight_hh_l{k}"]; // [H, H]
            double[] bIh = m.Params[$"rnn.bias_ih_l{k}"];   // [H]
            double[] bHh = m.Params[$"rnn.bias_hh_l{k}"];   // [H]
            double[] h = new double[(steps + 1) * batch * hidden]; // [S+1, B, H]
            if (h0 != null) Array.Copy(h0[k], h, batch * hidden);
            double[] hBelow = k > 0 ? hs[k - 1] : [];

            for (int t = 0; t < steps; t++)
            {
                for (int b = 0; b < batch; b++)
                {
                    int prevOff = (t * batch + b) * hidden;
                    int curOff = ((t + 1) * batch + b) * hidden;
                    for (int i = 0; i < hidden; i++)
                    {
                        double z = bIh[i] + bHh[i];
                        if (k == 0)
                        {
                            z += wIh[i * vocab + inputs[b, t]]; // W_ih times a one-hot = one column
                        }
                        else
                        {
                            for (int j = 0; j < hidden; j++) z += wIh[i * hidden + j] * hBelow[curOff + j];
                        }
                        for (int j = 0; j < hidden; j++) z += wHh[i * hidden + j] * h[prevOff + j];
                        h[curOff + i] = Math.Tanh(z);
                    }
                }
            }
            hs[k] = h;
        }
        return hs;
    }

    /// <summary>logits [S, B, V] from the top layer's states [S+1, B, H].</summary>
    private static double[] Logits(RefModel m, double[] hTop, int batch, int steps)
    {
        int vocab = m.V, hidden = m.H;
        double[] w = m.Params["decoder.weight"]; // [V, H]
        double[] bias = m.Params["decoder.bias"]; // [V]
        double[] logits = new double[steps * batch * vocab];
        for (int r = 0; r < steps * batch; r++)
        {
            int hOff = (r + batch) * hidden; // skip the h0 slice
            for (int v = 0; v < vocab; v++)
            {
                double z = bias[v];
                for (int j = 0; j < hidden; j++) z += w[v * hidden + j] * hTop[hOff + j];
                logits[r * vocab + v] = z;
            }
        }
        return logits;
    }

    private static double[][] FinalStates(double[][] hs, int batch, int steps, int hidden)
    {
        var result = new double[hs.Length][];
        for (int k = 0; k < hs.Length; k++)
        {
            result[k] = new double[batch * hidden]; // [B, H]
            Array.Copy(hs[k], steps * batch * hidden, result[k], 0, batch * hidden);
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

    private static (int Batch, int Steps) CheckArgs(RefModel m, int[,] inputs, int[,] targets, double[][]? h0)
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
        if (h0 != null)
        {
            if (h0.Length != m.L) throw new ArgumentException($"h0 needs {m.L} layers", nameof(h0));
            foreach (double[] layer in h0)
            {
                if (layer.Length != batch * m.H) throw new ArgumentException($"each h0 layer needs B*H = {batch * m.H} values", nameof(h0));
            }
        }
        return (batch, steps);
    }
}
