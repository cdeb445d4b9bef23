using GpuRnn.Kernels;

namespace GpuRnn.Tests.Reference;

/// <summary>
/// Many-to-one reference, one unpadded sequence at a time, plain loops in double: the stack (of
/// the given cell, Elman by default) reads the tokens, the decoder <c>Linear(H, C)</c> reads the top layer's state after the LAST
/// token, and the loss is the cross-entropy of the label. Written from the equations, sharing no
/// code with the engine. Parameters by PyTorch name, decoder.weight [C, H], decoder.bias [C]. Bidirectional: the
/// decoder reads [forward final h; reverse final h] of the top layer (the reverse one after reading the first token),
/// decoder.weight [C, 2H], as <c>torch.cat((h_n[-2], h_n[-1]), 1)</c>.
/// </summary>
public static class RefClassifier
{
    /// <summary>Loss and its gradient for one sequence x_0 … x_{n−1} and its label.</summary>
    public static (double Loss, Dictionary<string, double[]> Grads, double[] Logits) ForwardBackward(
        Dictionary<string, double[]> p, int vocab, int hidden, int layers, int classes, int[] seq, int label, CellKind cell = CellKind.Elman, bool bidirectional = false,
        Func<int, int, double[]?>? drop = null, Func<int, int, double[]?>? dropReverse = null)
    {
        int n = seq.Length;
        var stack = new RefStack(cell, "rnn.", vocab, hidden, layers, bidirectional);
        var run = stack.Forward(p, seq, drop: drop, dropReverse: dropReverse);
        // [D·H]: the top layer's last states as the decoder reads them (after dropout)
        double[] last = bidirectional ? [.. run.TopOutput(n - 1), .. run.ReverseTopOutput(0)] : run.TopOutput(n - 1);
        int width = last.Length;
        var w = p["decoder.weight"];   // [C, D·H]
        var logits = new double[classes];
        for (int c = 0; c < classes; c++)
        {
            logits[c] = p["decoder.bias"][c];
            for (int j = 0; j < width; j++)
                logits[c] += w[c * width + j] * last[j];
        }
        double max = logits.Max();
        double sum = logits.Sum(l => Math.Exp(l - max));
        double loss = Math.Log(sum) + max - logits[label];

        var g = p.ToDictionary(kv => kv.Key, kv => new double[kv.Value.Length]);
        var dLast = new double[width];
        for (int c = 0; c < classes; c++)
        {
            double d = Math.Exp(logits[c] - max) / sum - (c == label ? 1 : 0);
            g["decoder.bias"][c] = d;
            for (int j = 0; j < width; j++)
            {
                g["decoder.weight"][c * width + j] = d * last[j];
                dLast[j] += w[c * width + j] * d;
            }
        }
        // Only the top layer's last step receives a gradient from the decoder (the reverse direction's last step reads token 0).
        var dTop = Enumerable.Range(0, n).Select(_ => new double[hidden]).ToArray();
        dTop[n - 1] = dLast[..hidden];
        double[][]? dTopReverse = null;
        if (bidirectional)
        {
            dTopReverse = Enumerable.Range(0, n).Select(_ => new double[hidden]).ToArray();
            dTopReverse[0] = dLast[hidden..];
        }
        stack.Backward(p, g, run, dTop, dTopReverse: dTopReverse);
        return (loss, g, logits);
    }
}
