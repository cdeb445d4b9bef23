using GpuRnn.Kernels;

namespace GpuRnn.Tests.Reference;

/// <summary>
/// Encoder–decoder reference, one unpadded pair at a time, plain loops in double. The encoder stack
/// (<c>encoder.rnn.*</c>, layers of the given cell, Elman by default) reads the source from zero
/// states; each decoder layer (<c>decoder.rnn.*</c>) starts from the encoder layer's state (h, and c for an
/// LSTM) after the last source token and is teacher-forced on
/// [bos, target…] to predict [target…, eos] through <c>decoder.out</c>; the loss is the mean
/// cross-entropy over those predictions. Backward runs through the decoder, into its initial states,
/// and through the encoder. Written from the equations, sharing no code with the engine. A bidirectional
/// encoder starts decoder layer k from the SUM of its layer k's forward final state and reverse final state
/// (after reading the first token), h and c alike.
/// </summary>
public static class RefSeq2Seq
{
    public static (double Loss, int Count, Dictionary<string, double[]> Grads) ForwardBackward(
        Dictionary<string, double[]> p, int vocab, int hidden, int layers, int[] source, int[] target, int bos, int eos, CellKind cell = CellKind.Elman, bool bidirectional = false,
        Func<int, int, double[]?>? encoderDrop = null, Func<int, int, double[]?>? decoderDrop = null, Func<int, int, double[]?>? encoderDropReverse = null)
    {
        int[] decIn = [bos, .. target];
        int[] decOut = [.. target, eos];
        var g = p.ToDictionary(kv => kv.Key, kv => new double[kv.Value.Length]);
        var encoder = new RefStack(cell, "encoder.rnn.", vocab, hidden, layers, bidirectional);
        var decoder = new RefStack(cell, "decoder.rnn.", vocab, hidden, layers);
        var enc = encoder.Forward(p, source, drop: encoderDrop, dropReverse: encoderDropReverse);
        var h0 = Enumerable.Range(0, layers).Select(k => Sum(enc.FinalH(k), bidirectional ? enc.ReverseFinalH(k) : null)).ToArray();
        var c0 = Enumerable.Range(0, layers).Select(k => Sum(enc.FinalC(k), bidirectional ? enc.ReverseFinalC(k) : null)).ToArray();
        var dec = decoder.Forward(p, decIn, h0, c0, drop: decoderDrop);

        int n = decIn.Length;
        var w = p["decoder.out.weight"]; // [V, H]
        var dTop = new double[n][];
        double loss = 0;
        for (int t = 0; t < n; t++)
        {
            var h = dec.TopOutput(t);
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
        var (dH0, dC0) = decoder.Backward(p, g, dec, dTop);
        // The encoder's only gradient: each layer's last state (both directions' of a bidirectional one) started the decoder layer.
        encoder.Backward(p, g, enc, null, dH0, dC0);
        return (loss, n, g);
    }

    private static double[] Sum(double[] a, double[]? b) => b is null ? a : [.. a.Select((x, i) => x + b[i])];
}
