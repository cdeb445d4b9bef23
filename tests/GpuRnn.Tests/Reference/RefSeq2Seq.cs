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
        var enc = RefStack.Forward(p, "encoder.rnn.", vocab, hidden, layers, source, null);
        var h0 = Enumerable.Range(0, layers).Select(k => enc[k][source.Length]).ToArray();
        var dec = RefStack.Forward(p, "decoder.rnn.", vocab, hidden, layers, decIn, h0);

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
        var dH0 = RefStack.Backward(p, g, "decoder.rnn.", vocab, hidden, layers, decIn, dec, dTop, null);
        // The encoder's only gradient: each layer's last state started the decoder layer.
        RefStack.Backward(p, g, "encoder.rnn.", vocab, hidden, layers, source, enc, null, dH0);
        return (loss, n, g);
    }
}
