namespace GpuRnn.Tests.Reference;

/// <summary>
/// One stack of Elman layers, one unpadded sequence, plain loops in double: forward from given (or
/// zero) initial states, and backpropagation through time from gradients on the top layer's outputs
/// and/or on each layer's final state. Shared by the many-to-one and encoder–decoder references.
/// Parameters by name with a prefix (<c>rnn.</c>, <c>encoder.rnn.</c>, <c>decoder.rnn.</c>).
/// </summary>
public static class RefStack
{
    /// <summary>hs[k][t + 1] = h_t of layer k; hs[k][0] = h0[k] or zeros.</summary>
    public static double[][][] Forward(Dictionary<string, double[]> p, string prefix, int vocab, int hidden, int layers, int[] seq, double[][]? h0)
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
    public static double[][] Backward(Dictionary<string, double[]> p, Dictionary<string, double[]> g, string prefix, int vocab, int hidden, int layers,
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
