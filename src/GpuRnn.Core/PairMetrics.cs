using System.Globalization;

namespace GpuRnn;

/// <summary>
/// How an encoder–decoder does on held-out pairs: the teacher-forced loss, and with greedy
/// decoding the exact-sequence match rate and the token accuracy (the fraction of target tokens,
/// <c>&lt;eos&gt;</c> included, that the decoded sequence has at the same position).
/// </summary>
/// <param name="Loss">Mean cross-entropy per target token, teacher-forced.</param>
/// <param name="Pairs">Pairs scored.</param>
/// <param name="ExactMatches">Pairs decoded exactly.</param>
/// <param name="Tokens">Target tokens compared (each target and its end).</param>
/// <param name="TokensCorrect">Of those, the ones decoded right at their position.</param>
public sealed record PairMetrics(double Loss, long Pairs, long ExactMatches, long Tokens, long TokensCorrect)
{
    /// <summary>Fraction of pairs decoded exactly.</summary>
    public double ExactMatch => Pairs == 0 ? double.NaN : (double)ExactMatches / Pairs;

    /// <summary>Fraction of target tokens decoded right.</summary>
    public double TokenAccuracy => Tokens == 0 ? double.NaN : (double)TokensCorrect / Tokens;

    /// <summary>Greedy-decodes every pair of <paramref name="pairs"/> (file order) and compares with <paramref name="targets"/>.</summary>
    public static PairMetrics Compute(Predictor model, SequenceBatcher pairs, IReadOnlyList<int[]> targets, int bos, int eos, IReadOnlyCollection<int> excluded)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(pairs);
        ArgumentNullException.ThrowIfNull(targets);
        double loss = model.Evaluate(pairs.InOrder()).Loss;
        int maxLength = 2 * targets.Max(t => t.Length) + 2;
        long exact = 0, tokens = 0, correct = 0;
        int index = 0;
        foreach (var window in pairs.InOrder())
        {
            int count = Math.Min(window.Batch, targets.Count - index);
            var decoded = model.Decode(window.Source!, count, bos, eos, maxLength, excluded);
            for (int i = 0; i < count; i++, index++)
            {
                int[] want = [.. targets[index], eos];
                int[] got = [.. decoded[i], eos];
                exact += want.AsSpan().SequenceEqual(got) ? 1 : 0;
                tokens += want.Length;
                for (int t = 0; t < want.Length && t < got.Length; t++)
                    correct += want[t] == got[t] ? 1 : 0;
            }
        }
        return new PairMetrics(loss, index, exact, tokens, correct);
    }

    /// <summary>One line for reports.</summary>
    public string Report() => string.Create(CultureInfo.InvariantCulture,
        $"exact match {ExactMatch:P2} of {Pairs} pairs, token accuracy {TokenAccuracy:P2} of {Tokens} tokens, loss {Loss:F4}");
}
