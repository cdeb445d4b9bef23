namespace GpuRnn.Tests.Reference;

/// <summary>
/// Many-to-one reference, one unpadded sequence at a time, plain loops in double: the Elman stack
/// reads the tokens, the decoder <c>Linear(H, C)</c> reads the top layer's state after the LAST
/// token, and the loss is the cross-entropy of the label. Written from the equations, sharing no
/// code with the engine. Parameters by PyTorch name, decoder.weight [C, H], decoder.bias [C].
/// </summary>
public static class RefClassifier
{
    /// <summary>Loss and its gradient for one sequence x_0 … x_{n−1} and its label.</summary>
    public static (double Loss, Dictionary<string, double[]> Grads, double[] Logits) ForwardBackward(
        Dictionary<string, double[]> p, int vocab, int hidden, int layers, int classes, int[] seq, int label)
    {
        int n = seq.Length;
        // hs[k][t + 1] is h_t of layer k; hs[k][0] = 0.
        var hs = new double[layers][][];
        for (int k = 0; k < layers; k++)
        {
            hs[k] = new double[n + 1][];
            hs[k][0] = new double[hidden];
            var wIh = p[$"rnn.weight_ih_l{k}"];
            var wHh = p[$"rnn.weight_hh_l{k}"];
            var bIh = p[$"rnn.bias_ih_l{k}"];
            var bHh = p[$"rnn.bias_hh_l{k}"];
            for (int t = 0; t < n; t++)
            {
                var h = new double[hidden];
                for (int i = 0; i < hidden; i++)
                {
                    double z = bIh[i] + bHh[i];
                    if (k == 0)
                        z += wIh[i * vocab + seq[t]];
                    else
                        for (int j = 0; j < hidden; j++)
                            z += wIh[i * hidden + j] * hs[k - 1][t + 1][j];
                    for (int j = 0; j < hidden; j++)
                        z += wHh[i * hidden + j] * hs[k][t][j];
                    h[i] = Math.Tanh(z);
                }
                hs[k][t + 1] = h;
            }
        }
        var last = hs[layers - 1][n]; // [H]
        var w = p["decoder.weight"];   // [C, H]
        var logits = new double[classes];
        for (int c = 0; c < classes; c++)
        {
            logits[c] = p["decoder.bias"][c];
            for (int j = 0; j < hidden; j++)
                logits[c] += w[c * hidden + j] * last[j];
        }
        double max = logits.Max();
        double sum = logits.Sum(l => Math.Exp(l - max));
        double loss = Math.Log(sum) + max - logits[label];

        var g = p.ToDictionary(kv => kv.Key, kv => new double[kv.Value.Length]);
        var dLast = new double[hidden];
        for (int c = 0; c < classes; c++)
        {
            double d = Math.Exp(logits[c] - max) / sum - (c == label ? 1 : 0);
            g["decoder.bias"][c] = d;
            for (int j = 0; j < hidden; j++)
            {
                g["decoder.weight"][c * hidden + j] = d * last[j];
                dLast[j] += w[c * hidden + j] * d;
            }
        }
        // dh[t] = dLoss/dh_t of the current layer from above; only the top's last step has one.
        var dAbove = new double[n][];
        for (int t = 0; t < n; t++)
            dAbove[t] = new double[hidden];
        dAbove[n - 1] = dLast;
        for (int k = layers - 1; k >= 0; k--)
        {
            var wIh = p[$"rnn.weight_ih_l{k}"];
            var wHh = p[$"rnn.weight_hh_l{k}"];
            var dBelow = new double[n][];
            var carry = new double[hidden];
            for (int t = n - 1; t >= 0; t--)
            {
                dBelow[t] = new double[hidden];
                var dz = new double[hidden];
                for (int i = 0; i < hidden; i++)
                {
                    double h = hs[k][t + 1][i];
                    dz[i] = (dAbove[t][i] + carry[i]) * (1 - h * h);
                }
                var nextCarry = new double[hidden];
                for (int i = 0; i < hidden; i++)
                {
                    g[$"rnn.bias_ih_l{k}"][i] += dz[i];
                    g[$"rnn.bias_hh_l{k}"][i] += dz[i];
                    for (int j = 0; j < hidden; j++)
                    {
                        g[$"rnn.weight_hh_l{k}"][i * hidden + j] += dz[i] * hs[k][t][j];
                        nextCarry[j] += wHh[i * hidden + j] * dz[i];
                    }
                    if (k == 0)
                    {
                        g["rnn.weight_ih_l0"][i * vocab + seq[t]] += dz[i];
                    }
                    else
                    {
                        for (int j = 0; j < hidden; j++)
                        {
                            g[$"rnn.weight_ih_l{k}"][i * hidden + j] += dz[i] * hs[k - 1][t + 1][j];
                            dBelow[t][j] += wIh[i * hidden + j] * dz[i];
                        }
                    }
                }
                carry = nextCarry;
            }
            dAbove = dBelow;
        }
        return (loss, g, logits);
    }
}
