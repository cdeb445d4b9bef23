using System.Globalization;
using System.Text;

namespace GpuRnn;

/// <summary>
/// How a classifier does on labelled sequences: mean cross-entropy, accuracy, and per class the
/// precision, recall and F1 with the confusion matrix (accuracy alone misleads on imbalanced data).
/// </summary>
public sealed class ClassifierMetrics
{
    internal ClassifierMetrics(IReadOnlyList<string> classes, long[,] confusion, double loss)
    {
        Classes = classes;
        Confusion = confusion;
        Loss = loss;
    }

    /// <summary>Class names in index order.</summary>
    public IReadOnlyList<string> Classes { get; }

    /// <summary>[true class, predicted class] counts.</summary>
    public long[,] Confusion { get; }

    /// <summary>Mean cross-entropy of the true labels.</summary>
    public double Loss { get; }

    /// <summary>Sequences scored.</summary>
    public long Count => Confusion.Cast<long>().Sum();

    /// <summary>Fraction predicted right.</summary>
    public double Accuracy => Count == 0 ? double.NaN : Enumerable.Range(0, Classes.Count).Sum(c => Confusion[c, c]) / (double)Count;

    /// <summary>Of the sequences predicted as class c, the fraction that are c (NaN when none was predicted).</summary>
    public double Precision(int c) => Ratio(Confusion[c, c], Enumerable.Range(0, Classes.Count).Sum(t => Confusion[t, c]));

    /// <summary>Of the sequences of class c, the fraction predicted as c.</summary>
    public double Recall(int c) => Ratio(Confusion[c, c], Enumerable.Range(0, Classes.Count).Sum(p => Confusion[c, p]));

    /// <summary>Harmonic mean of precision and recall of class c (0 when either is 0 or undefined).</summary>
    public double F1(int c)
    {
        double p = Precision(c), r = Recall(c);
        return double.IsNaN(p) || double.IsNaN(r) || p + r == 0 ? 0 : 2 * p * r / (p + r);
    }

    /// <summary>
    /// The class with the fewest sequences among those scored (the first on a tie); its F1 is the number to watch on
    /// imbalanced data, where always answering the common class already gives a high accuracy.
    /// </summary>
    public int RarestClass()
    {
        int rarest = -1;
        long fewest = long.MaxValue;
        for (int c = 0; c < Classes.Count; c++)
        {
            long count = Enumerable.Range(0, Classes.Count).Sum(p => Confusion[c, p]);
            if (count > 0 && count < fewest)
                (rarest, fewest) = (c, count);
        }
        return Math.Max(rarest, 0);
    }

    /// <summary>JSON has no NaN: an undefined ratio is written as null.</summary>
    private static double? OrNull(double x) => double.IsNaN(x) ? null : x;

    private static double Ratio(long a, long b) => b == 0 ? double.NaN : (double)a / b;

    /// <summary>Runs <paramref name="model"/>'s classifier over every sequence of <paramref name="data"/> once.</summary>
    public static ClassifierMetrics Compute(Predictor model, SequenceBatcher data, IReadOnlyList<string> classes)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(data);
        int c = classes.Count;
        var confusion = new long[c, c];
        double loss = 0;
        foreach (var window in data.InOrder())
        {
            var logits = model.ClassLogits(window); // [B, C]
            for (int b = 0; b < window.Batch; b++)
            {
                int label = window.Labels[b];
                if (label < 0)
                    continue; // an empty slot of the last batch
                var (predicted, _, logSumExp) = Predict(logits.AsSpan(b * c, c));
                loss += logSumExp - logits[b * c + label];
                confusion[label, predicted]++;
            }
        }
        long count = confusion.Cast<long>().Sum();
        return new ClassifierMetrics(classes, confusion, count > 0 ? loss / count : double.NaN);
    }

    /// <summary>
    /// The most likely class of one row of logits, its probability, and log Σ exp(logits) (for the
    /// cross-entropy of any class: logSumExp − logit). The max is subtracted before exponentiating.
    /// </summary>
    public static (int Class, double Probability, double LogSumExp) Predict(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int k = 1; k < logits.Length; k++)
        {
            if (logits[k] > logits[best])
                best = k;
        }
        double max = logits[best], sum = 0;
        foreach (float v in logits)
            sum += Math.Exp(v - max);
        return (best, 1 / sum, max + Math.Log(sum));
    }

    /// <summary>A small plain-text report: accuracy, per-class precision/recall/F1, confusion matrix.</summary>
    public string Report()
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine(string.Create(inv, $"accuracy {Accuracy:P2} of {Count} sequences, loss {Loss:F4}"));
        int width = Math.Max(9, Classes.Max(l => l.Length) + 2);
        sb.AppendLine($"{"class".PadRight(width)} precision  recall     F1");
        for (int c = 0; c < Classes.Count; c++)
            sb.AppendLine(string.Create(inv, $"{Classes[c].PadRight(width)} {Precision(c),9:F4}  {Recall(c),6:F4}  {F1(c),6:F4}"));
        sb.AppendLine("confusion (rows: true, columns: predicted)");
        sb.AppendLine(new string(' ', width) + string.Concat(Classes.Select(l => l.PadLeft(width))));
        for (int t = 0; t < Classes.Count; t++)
            sb.AppendLine(Classes[t].PadRight(width) + string.Concat(Enumerable.Range(0, Classes.Count).Select(p => Confusion[t, p].ToString(inv).PadLeft(width))));
        return sb.ToString().TrimEnd();
    }

    /// <summary>The metrics as a JSON-friendly dictionary.</summary>
    public Dictionary<string, object?> ToDictionary() => new()
    {
        ["loss"] = OrNull(Loss),
        ["accuracy"] = OrNull(Accuracy),
        ["count"] = Count,
        ["per_class"] = Enumerable.Range(0, Classes.Count).ToDictionary(c => Classes[c], c => new { precision = OrNull(Precision(c)), recall = OrNull(Recall(c)), f1 = F1(c) }),
        ["confusion"] = Enumerable.Range(0, Classes.Count).Select(t => Enumerable.Range(0, Classes.Count).Select(p => Confusion[t, p]).ToArray()).ToArray(),
    };
}
