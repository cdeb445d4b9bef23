namespace GpuRnn.Tests.Reference;

/// <summary>Gradient clipping as in torch.nn.utils, over every gradient together.</summary>
public static class RefClip
{
    /// <summary>
    /// <c>clip_grad_norm_(max_norm, norm_type=2)</c>: total = sqrt(sum of squares of all gradients);
    /// coef = max_norm / (total + 1e-6); when coef &lt; 1 every gradient is scaled by coef in place.
    /// Returns the total norm measured before clipping (as torch does).
    /// </summary>
    public static double ClipGradNorm(Dictionary<string, double[]> grads, double maxNorm)
    {
        ArgumentNullException.ThrowIfNull(grads);
        double sumSq = 0;
        foreach (double[] g in grads.Values)
            foreach (double x in g)
                sumSq += x * x;
        double total = Math.Sqrt(sumSq);

        // torch adds 1e-6 so a zero gradient does not divide by zero; it clamps coef at 1 (never scales up).
        double coef = maxNorm / (total + 1e-6);
        if (coef < 1.0)
        {
            foreach (double[] g in grads.Values)
                for (int i = 0; i < g.Length; i++)
                    g[i] *= coef;
        }
        return total;
    }

    /// <summary><c>clip_grad_value_(clip)</c>: clamp every gradient element to [-clip, clip] in place.</summary>
    public static void ClipGradValue(Dictionary<string, double[]> grads, double clip)
    {
        ArgumentNullException.ThrowIfNull(grads);
        if (clip < 0) throw new ArgumentOutOfRangeException(nameof(clip), "clip must be >= 0");
        foreach (double[] g in grads.Values)
            for (int i = 0; i < g.Length; i++)
                g[i] = Math.Clamp(g[i], -clip, clip);
    }
}
