namespace GpuRnn.Tests.Reference;

/// <summary>
/// Encoder–decoder reference, one unpadded pair at a time, plain loops in double. The encoder stack
/// (<c>encoder.rnn.*</c>) reads the source from zero states; each decoder layer (<c>decoder.rnn.*</c>)
/// starts from the encoder layer's state after the last source token and is teacher-forced on
/// [bos, target…] to predict [target…, eos] through <c>decoder.out</c>; the loss is the mean
/// cross-entropy over those predictions. Backward runs through the decoder, into its initial states,
/// and through the encoder. Written from the equations, sharing no code with the engine.
/// </summary>
public static class RefSeq2Seq
{
    public static (double Loss, int Count, Dictionary<string, double[]> Grads) ForwardBackward(
        Dictionary<string, double[]> p, int vocab, int hidden, int layers, int[] source, int[] target, int bos, int eos)
    {
        int[] decIn = [bos, .. target];
        int[] decOut = [.. target, eos];
        var g = p.ToDictionary(kv => kv.Key, kv => new double[kv.Value.Length]);
        var enc = Forward(p, "encoder.rnn.", vocab, hidden, layers, source, null);
        var h0 = Enumerable.Range(0, layers).Select(k => enc[k][source.Length]).ToArray();
        var dec = Forward(p, "decoder.rnn.", vocab, hidden, layers, decIn, h0);

        int n = decIn.Length;
        var w = p["decoder.out.weight"]; // [V, H]
        var dTop = new double[n][];
        double loss = 0;
        for (int t = 0; t < n; t++)
        {
            var h = dec[layers - 1][t + 1];
            var logits = new double[vocab];
            for (int c = 0; c < vocab; c++)
            {
                logits[c] = p["decoder.out.bias"][c];
                for (int j = 0; j < hidden; j++)
                    logits[c] += w[c * hidden + j] * h[j];
            }
            double max = logits.Max(), sum = logits.Sum(l => Math.Exp(l - max));
            loss += (Math.Log(sum) + max - logits[decOut[t]]) / n;
            dTop[t] = new double[hidden];
            for (int c = 0; c < vocab; c++)
            {
                double d = (Math.Exp(logits[c] - max) / sum - (c == decOut[t] ? 1 : 0)) / n;
                g["decoder.out.bias"][c] += d;
                for (int j = 0; j < hidden; j++)
                {
                    g["decoder.out.weight"][c * hidden + j] += d * h[j];
                    dTop[t][j] += w[c * hidden + j] * d;
                }
            }
        }
        var dH0 = Backward(p, g, "decoder.rnn.", vocab, hidden, layers, decIn, dec, dTop, null);
        // The encoder's only gradient: each layer's last state started the decoder layer.
        Backward(p, g, "encoder.rnn.", vocab, hidden, layers, source, enc, null, dH0);
        return (loss, n, g);
    }

    /// <summary>hs[k][t + 1] = h_t of layer k; hs[k][0] = h0[k] or zeros.</summary>
    private static double[][][] Forward(Dictionary<string, double[]> p, string prefix, int vocab, int hidden, int layers, int[] seq, double[][]? h0)
    {
        int n = seq.Length;
        var hs = new double[layers][][];
        for (int k = 0; k < layers; k++)
        {
            hs[k] = new double[n + 1][];
            hs[k][0] = h0?[k] ?? new double[hidden];
            var wIh = p[$"{prefix}weight_ih_l{k}"];
            var wHh = p[$"{prefix}weight_hh_l{k}"];
            for (int t = 0; t < n; t++)
            {
                var h = new double[hidden];
                for (int i = 0; i < hidden; i++)
                {
                    double z = p[$"{prefix}bias_ih_l{k}"][i] + p[$"{prefix}bias_hh_l{k}"][i];
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
        return hs;
    }

    /// <summary>
    /// BPTT of one stack. dTop[t]: gradient w.r.t. the top layer's h_t (or null); lastState[k]:
    /// gradient w.r.t. layer k's final state (or null). Returns the gradient w.r.t. each layer's h_0.
    /// </summary>
    private static double[][] Backward(Dictionary<string, double[]> p, Dictionary<string, double[]> g, string prefix, int vocab, int hidden, int layers,
        int[] seq, double[][][] hs, double[][]? dTop, double[][]? lastState)
    {
        int n = seq.Length;
        var dH0 = new double[layers][];
        double[][] dAbove = dTop ?? Enumerable.Range(0, n).Select(_ => new double[hidden]).ToArray();
        for (int k = layers - 1; k >= 0; k--)
        {
            var wIh = p[$"{prefix}weight_ih_l{k}"];
            var wHh = p[$"{prefix}weight_hh_l{k}"];
            var dBelow = Enumerable.Range(0, n).Select(_ => new double[hidden]).ToArray();
            var carry = lastState is not null ? (double[])lastState[k].Clone() : new double[hidden];
            for (int t = n - 1; t >= 0; t--)
            {
                var dz = new double[hidden];
                for (int i = 0; i < hidden; i++)
                {
                    double h = hs[k][t + 1][i];
                    dz[i] = (dAbove[t][i] + carry[i]) * (1 - h * h);
                }
                var next = new double[hidden];
                for (int i = 0; i < hidden; i++)
                {
                    g[$"{prefix}bias_ih_l{k}"][i] += dz[i];
                    g[$"{prefix}bias_hh_l{k}"][i] += dz[i];
                    for (int j = 0; j < hidden; j++)
                    {
                        g[$"{prefix}weight_hh_l{k}"][i * hidden + j] += dz[i] * hs[k][t][j];
                        next[j] += wHh[i * hidden + j] * dz[i];
                    }
                    if (k == 0)
                    {
                        g[$"{prefix}weight_ih_l0"][i * vocab + seq[t]] += dz[i];
                    }
                    else
                    {
                        for (int j = 0; j < hidden; j++)
                        {
                            g[$"{prefix}weight_ih_l{k}"][i * hidden + j] += dz[i] * hs[k - 1][t + 1][j];
                            dBelow[t][j] += wIh[i * hidden + j] * dz[i];
                        }
                    }
                }
                carry = next;
            }
            dH0[k] = carry;
            dAbove = dBelow;
        }
        return dH0;
    }
}
