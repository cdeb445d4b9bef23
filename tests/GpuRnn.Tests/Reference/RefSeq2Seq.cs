using GpuRnn.Kernels;

namespace GpuRnn.Tests.Reference;

/// <summary>
/// Encoder–decoder reference, one unpadded pair at a time, plain loops in double. The encoder stack
/// (<c>encoder.rnn.*</c>, layers of the given cell, Elman by default) reads the source from zero
/// states; each decoder layer (<c>decoder.rnn.*</c>) starts from the encoder layer's state (h, and c for an
/// LSTM) after the last source token and is teacher-forced on
/// [bos, target…] to predict [target…, eos] through <c>decoder.out</c>; the loss is the mean
/// cross-entropy over those predictions. Backward runs through the decoder, into its initial states,
/// and through the encoder. With Luong attention (dot or general) the output layer reads h̃_t = tanh(W_c [c_t; h_t]),
/// c_t = Σ_j a_tj m_j over the encoder's top-layer outputs m_j, a_t = softmax_j(score(h_t, m_j)), score = h_t·m_j (dot)
/// or h_t·W_a m_j (general), and the encoder's top layer gets the attention's gradient at every source step. With
/// Bahdanau's (additive), the decoder's first layer at step t reads s = its own state h_t before the step:
/// q = W_q s, e_j = v·tanh(q + W_k m_j), a = softmax_j(e), c = Σ_j a_j m_j, and W_ctx c is added to that step's input term;
/// the output layer reads the decoder's top outputs.
/// A bidirectional encoder starts decoder layer k from the SUM of its layer k's forward final state and reverse final
/// state (after reading the first token), h and c alike, and its memory is the sum of both directions' top outputs at
/// each source position, m_j = h→_j + h←_j, so each direction's top output gets all of dm_j. Dropout: the drop factors
/// of RefStack.Forward per stack (the reverse direction's by its own step). Written from the equations, sharing no code
/// with the engine.
/// </summary>
public static class RefSeq2Seq
{
    public static (double Loss, int Count, Dictionary<string, double[]> Grads) ForwardBackward(
        Dictionary<string, double[]> p, int vocab, int hidden, int layers, int[] source, int[] target, int bos, int eos, CellKind cell = CellKind.Elman,
        AttentionKind attention = AttentionKind.None, bool bidirectional = false,
        Func<int, int, double[]?>? encoderDrop = null, Func<int, int, double[]?>? decoderDrop = null, Func<int, int, double[]?>? encoderDropReverse = null) =>
        Run(p, vocab, hidden, layers, source, target, bos, eos, cell, attention, bidirectional, encoderDrop, decoderDrop, encoderDropReverse).Result;

    /// <summary>
    /// The forward of one pair: the logits [target steps + 1][V] at the decoder's inputs [bos, target…], the attention
    /// weights a_tj [target steps + 1][source steps] (empty rows without attention) and the decoder stack's run (its final states).
    /// </summary>
    public static (double[][] Logits, double[][] Weights, RefStackRun Decoder) Forward(Dictionary<string, double[]> p, int vocab, int hidden, int layers,
        int[] source, int[] target, int bos, int eos, CellKind cell, AttentionKind attention, bool bidirectional)
    {
        var run = Run(p, vocab, hidden, layers, source, target, bos, eos, cell, attention, bidirectional, null, null, null);
        return (run.Logits, run.Weights, run.Decoder);
    }

    /// <summary>The attention weights a_tj [target steps][source steps] of one pair (forward only).</summary>
    public static double[][] AttentionWeights(Dictionary<string, double[]> p, int vocab, int hidden, int layers, int[] source, int[] target, int bos, int eos,
        CellKind cell, AttentionKind attention, bool bidirectional = false) =>
        Run(p, vocab, hidden, layers, source, target, bos, eos, cell, attention, bidirectional, null, null, null).Weights;

    private static ((double Loss, int Count, Dictionary<string, double[]> Grads) Result, double[][] Weights, double[][] Logits, RefStackRun Decoder) Run(
        Dictionary<string, double[]> p, int vocab, int hidden, int layers, int[] source, int[] target, int bos, int eos, CellKind cell, AttentionKind attention,
        bool bidirectional, Func<int, int, double[]?>? encoderDrop, Func<int, int, double[]?>? decoderDrop, Func<int, int, double[]?>? encoderDropReverse)
    {
        int[] decIn = [bos, .. target];
        int[] decOut = [.. target, eos];
        var g = p.ToDictionary(kv => kv.Key, kv => new double[kv.Value.Length]);
        var encoder = new RefStack(cell, "encoder.rnn.", vocab, hidden, layers, bidirectional);
        var decoder = new RefStack(cell, "decoder.rnn.", vocab, hidden, layers);
        var enc = encoder.Forward(p, source, drop: encoderDrop, dropReverse: encoderDropReverse);
        var h0 = Enumerable.Range(0, layers).Select(k => Sum(enc.FinalH(k), bidirectional ? enc.ReverseFinalH(k) : null)).ToArray();
        var c0 = Enumerable.Range(0, layers).Select(k => Sum(enc.FinalC(k), bidirectional ? enc.ReverseFinalC(k) : null)).ToArray();
        int n = decIn.Length, s = source.Length;
        // The memory m_j [H] (the encoder's top layer, an encoder's top is never dropped).
        var mem = Enumerable.Range(0, s).Select(j => Sum(enc.TopOutput(j), bidirectional ? enc.ReverseTopOutput(j) : null)).ToArray();
        var dMem = attention == AttentionKind.None ? null : Enumerable.Range(0, s).Select(_ => new double[hidden]).ToArray();
        var bahdanau = attention == AttentionKind.Additive ? new Bahdanau(p, g, hidden, mem, dMem!, n) : null;
        var dec = decoder.Forward(p, decIn, h0, c0, drop: decoderDrop, stepInput: bahdanau is null ? null : bahdanau.Forward);
        var w = p["decoder.out.weight"]; // [V, H]
        var dTop = new double[n][];
        var weights = new double[n][];
        var allLogits = new double[n][];
        double loss = 0;
        for (int t = 0; t < n; t++)
        {
            var top = dec.TopOutput(t);
            var att = attention is AttentionKind.Dot or AttentionKind.General ? Attend(p, hidden, attention, top, mem) : null;
            weights[t] = att?.A ?? bahdanau?.A[t] ?? [];
            var h = att?.State ?? top;
            var logits = allLogits[t] = new double[vocab];
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
            if (att is not null)
                dTop[t] = AttendBackward(p, g, hidden, attention, top, mem, att, dTop[t], dMem!);
        }
        var (dH0, dC0) = decoder.Backward(p, g, dec, dTop, stepInputBackward: bahdanau is null ? null : bahdanau.Backward);
        // Each encoder layer's last state started the decoder layer; with attention, every top-layer output was read too.
        encoder.Backward(p, g, enc, dMem, dH0, dC0, dTopReverse: bidirectional ? dMem : null);
        return ((loss, n, g), weights, allLogits, dec);
    }

    private sealed record Attended(double[] Q, double[] A, double[] Context, double[] State);

    /// <summary>q = h (dot) or q_i = Σ_k h_k·W_a[k, i] (general); a = softmax_j(q·m_j); c = Σ_j a_j m_j; h̃ = tanh(W_c [c; h]).</summary>
    private static Attended Attend(Dictionary<string, double[]> p, int hidden, AttentionKind attention, double[] h, double[][] mem)
    {
        int s = mem.Length;
        var q = h;
        if (attention == AttentionKind.General)
        {
            var wa = p["attention.weight"];
            q = new double[hidden];
            for (int i = 0; i < hidden; i++)
                for (int k = 0; k < hidden; k++)
                    q[i] += h[k] * wa[k * hidden + i];
        }
        var scores = Enumerable.Range(0, s).Select(j => Dot(q, mem[j])).ToArray();
        double max = scores.Max(), sum = scores.Sum(x => Math.Exp(x - max));
        var a = scores.Select(x => Math.Exp(x - max) / sum).ToArray();
        var context = new double[hidden];
        for (int j = 0; j < s; j++)
            for (int k = 0; k < hidden; k++)
                context[k] += a[j] * mem[j][k];
        var wc = p["attention.combine.weight"]; // [H, 2H]
        var state = new double[hidden];
        for (int i = 0; i < hidden; i++)
        {
            double z = 0;
            for (int k = 0; k < hidden; k++)
                z += wc[i * 2 * hidden + k] * context[k] + wc[i * 2 * hidden + hidden + k] * h[k];
            state[i] = Math.Tanh(z);
        }
        return new Attended(q, a, context, state);
    }

    /// <summary>From dh̃: adds dW_c (and dW_a) into g and dm_j into dMem; returns dh.</summary>
    private static double[] AttendBackward(Dictionary<string, double[]> p, Dictionary<string, double[]> g, int hidden, AttentionKind attention, double[] h,
        double[][] mem, Attended att, double[] dState, double[][] dMem)
    {
        int s = mem.Length;
        var wc = p["attention.combine.weight"];
        var gc = g["attention.combine.weight"];
        var dh = new double[hidden];
        var dc = new double[hidden];
        for (int i = 0; i < hidden; i++)
        {
            double dz = dState[i] * (1 - att.State[i] * att.State[i]);
            for (int k = 0; k < hidden; k++)
            {
                gc[i * 2 * hidden + k] += dz * att.Context[k];
                gc[i * 2 * hidden + hidden + k] += dz * h[k];
                dc[k] += dz * wc[i * 2 * hidden + k];
                dh[k] += dz * wc[i * 2 * hidden + hidden + k];
            }
        }
        var da = Enumerable.Range(0, s).Select(j => Dot(dc, mem[j])).ToArray();
        double weighted = Enumerable.Range(0, s).Sum(j => att.A[j] * da[j]);
        var dq = new double[hidden];
        for (int j = 0; j < s; j++)
        {
            double ds = att.A[j] * (da[j] - weighted);
            var m = mem[j];
            for (int k = 0; k < hidden; k++)
            {
                dMem[j][k] += att.A[j] * dc[k] + ds * att.Q[k];
                dq[k] += ds * m[k];
            }
        }
        if (attention == AttentionKind.Dot)
        {
            for (int k = 0; k < hidden; k++)
                dh[k] += dq[k];
            return dh;
        }
        var wa = p["attention.weight"];
        var ga = g["attention.weight"];
        for (int k = 0; k < hidden; k++)
        {
            for (int i = 0; i < hidden; i++)
            {
                dh[k] += wa[k * hidden + i] * dq[i];
                ga[k * hidden + i] += h[k] * dq[i];
            }
        }
        return dh;
    }

    /// <summary>Bahdanau attention of one pair, step by step: the forward adds W_ctx c_t to the first decoder layer's input, the backward returns dh_t.</summary>
    private sealed class Bahdanau(Dictionary<string, double[]> p, Dictionary<string, double[]> g, int hidden, double[][] mem, double[][] dMem, int steps)
    {
        private readonly double[][] state = new double[steps][], query = new double[steps][], context = new double[steps][];
        private readonly double[][][] u = new double[steps][][]; // tanh(q_t + W_k m_j) per step and source position

        /// <summary>a_t per decoder step.</summary>
        public double[][] A { get; } = new double[steps][];

        public double[] Forward(int t, double[] s)
        {
            var wq = p["attention.query.weight"];
            var wk = p["attention.key.weight"];
            var v = p["attention.score.weight"];
            var wctx = p["attention.context.weight"]; // [G, H]
            state[t] = s;
            query[t] = Enumerable.Range(0, hidden).Select(i => Enumerable.Range(0, hidden).Sum(k => wq[i * hidden + k] * s[k])).ToArray();
            u[t] = mem.Select(m => Enumerable.Range(0, hidden).Select(i => Math.Tanh(query[t][i] + Enumerable.Range(0, hidden).Sum(k => wk[i * hidden + k] * m[k]))).ToArray()).ToArray();
            var e = u[t].Select(x => Dot(v, x)).ToArray();
            double max = e.Max(), sum = e.Sum(x => Math.Exp(x - max));
            A[t] = e.Select(x => Math.Exp(x - max) / sum).ToArray();
            context[t] = new double[hidden];
            for (int j = 0; j < mem.Length; j++)
                for (int k = 0; k < hidden; k++)
                    context[t][k] += A[t][j] * mem[j][k];
            int gates = wctx.Length / hidden;
            return Enumerable.Range(0, gates).Select(i => Enumerable.Range(0, hidden).Sum(k => wctx[i * hidden + k] * context[t][k])).ToArray();
        }

        public double[] Backward(int t, double[] dx)
        {
            var wq = p["attention.query.weight"];
            var wk = p["attention.key.weight"];
            var v = p["attention.score.weight"];
            var wctx = p["attention.context.weight"];
            int gates = dx.Length;
            var dc = new double[hidden];
            for (int i = 0; i < gates; i++)
            {
                for (int k = 0; k < hidden; k++)
                {
                    g["attention.context.weight"][i * hidden + k] += dx[i] * context[t][k];
                    dc[k] += wctx[i * hidden + k] * dx[i];
                }
            }
            var da = mem.Select(m => Dot(dc, m)).ToArray();
            double weighted = Enumerable.Range(0, mem.Length).Sum(j => A[t][j] * da[j]);
            var dq = new double[hidden];
            for (int j = 0; j < mem.Length; j++)
            {
                double de = A[t][j] * (da[j] - weighted);
                for (int i = 0; i < hidden; i++)
                {
                    dMem[j][i] += A[t][j] * dc[i];
                    g["attention.score.weight"][i] += de * u[t][j][i];
                    double dz = de * v[i] * (1 - u[t][j][i] * u[t][j][i]); // d(q + W_k m_j)_i
                    dq[i] += dz;
                    for (int k = 0; k < hidden; k++)
                    {
                        g["attention.key.weight"][i * hidden + k] += dz * mem[j][k];
                        dMem[j][k] += wk[i * hidden + k] * dz;
                    }
                }
            }
            var ds = new double[hidden];
            for (int i = 0; i < hidden; i++)
            {
                for (int k = 0; k < hidden; k++)
                {
                    g["attention.query.weight"][i * hidden + k] += dq[i] * state[t][k];
                    ds[k] += wq[i * hidden + k] * dq[i];
                }
            }
            return ds;
        }
    }

    private static double[] Sum(double[] a, double[]? b) => b is null ? a : [.. a.Select((x, i) => x + b[i])];

    private static double Dot(double[] x, double[] y)
    {
        double sum = 0;
        for (int i = 0; i < x.Length; i++)
            sum += x[i] * y[i];
        return sum;
    }
}
