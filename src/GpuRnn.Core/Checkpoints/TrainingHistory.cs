using System.Text.Json;
using System.Text.Json.Nodes;

namespace GpuRnn.Checkpoints;

/// <summary>The mean training loss of <paramref name="Steps"/> consecutive steps ending at <paramref name="Step"/>.</summary>
/// <param name="Step">The bucket's last step.</param>
/// <param name="Loss">Mean per-window loss over the bucket.</param>
/// <param name="Steps">Steps in the bucket (the history's stride, or fewer for the newest bucket).</param>
public readonly record struct LossPoint(long Step, double Loss, int Steps)
{
    /// <summary>Where the bucket is drawn: the middle of its steps.</summary>
    public double Center => Step - (Steps - 1) / 2.0;
}

/// <summary>One validation pass.</summary>
/// <param name="Step">The step after which it ran.</param>
/// <param name="Loss">Validation loss (nats per predicted token, or per sequence for a classifier).</param>
/// <param name="Accuracy">A classifier's validation accuracy; null otherwise.</param>
/// <param name="TrainAccuracy">A classifier's accuracy on a fixed sample of its training rows at the same step; null otherwise.</param>
public readonly record struct EvaluationPoint(long Step, double Loss, double? Accuracy = null, double? TrainAccuracy = null);

/// <summary>
/// A run's curves from its first step, kept in a checkpoint (<c>gpurnn.history</c>) so that a resumed run's plot
/// covers the whole run, not only the steps since the resume. The training loss is kept in buckets of
/// <see cref="Stride"/> steps (their mean): one point per step until <see cref="MaxPoints"/>, then adjacent buckets
/// merge pairwise and the stride doubles, so the size stays bounded whatever the run's length and every bucket but
/// the newest covers the same number of steps. Validation passes are kept as they are.
/// </summary>
public sealed class TrainingHistory
{
    /// <summary>Most training-loss buckets kept (about 20 bytes each in the checkpoint's metadata).</summary>
    public const int MaxPoints = 4000;

    private readonly List<LossPoint> train = [];
    private readonly List<EvaluationPoint> evaluations = [];

    /// <summary>Steps per training-loss bucket: 1, 2, 4, …</summary>
    public int Stride { get; private set; } = 1;

    /// <summary>Training-loss buckets in step order.</summary>
    public IReadOnlyList<LossPoint> Train => train;

    /// <summary>Validation passes in step order.</summary>
    public IReadOnlyList<EvaluationPoint> Evaluations => evaluations;

    /// <summary>Adds the loss of <paramref name="step"/> (steps arrive in order, one at a time).</summary>
    public void AddStep(long step, double loss)
    {
        if (train.Count > 0 && step <= train[^1].Step)
            throw new ArgumentOutOfRangeException(nameof(step), step, $"steps arrive in order; the last was {train[^1].Step}.");
        if (train.Count > 0 && train[^1].Steps < Stride)
        {
            var last = train[^1];
            train[^1] = new LossPoint(step, (last.Loss * last.Steps + loss) / (last.Steps + 1), last.Steps + 1);
            return;
        }
        train.Add(new LossPoint(step, loss, 1));
        if (train.Count <= MaxPoints)
            return;
        // Merge pairs of buckets: weights by step count, so the newest (partial) bucket counts for what it holds.
        int kept = 0;
        for (int i = 0; i < train.Count; i += 2)
        {
            if (i + 1 == train.Count)
            {
                train[kept++] = train[i];
                break;
            }
            var (a, b) = (train[i], train[i + 1]);
            train[kept++] = new LossPoint(b.Step, (a.Loss * a.Steps + b.Loss * b.Steps) / (a.Steps + b.Steps), a.Steps + b.Steps);
        }
        train.RemoveRange(kept, train.Count - kept);
        Stride *= 2;
    }

    /// <summary>Adds a validation pass.</summary>
    public void AddEvaluation(EvaluationPoint point) => evaluations.Add(point);

    /// <summary>The metadata value: <c>{"stride": S, "train": [[step, loss, steps], …], "val": [[step, loss, accuracy, train_accuracy], …]}</c>.</summary>
    internal string ToJson()
    {
        var root = new JsonObject
        {
            ["stride"] = Stride,
            ["train"] = new JsonArray(train.Select(p => (JsonNode)new JsonArray(p.Step, Stored(p.Loss), p.Steps)).ToArray()),
            ["val"] = new JsonArray(evaluations.Select(p => (JsonNode)new JsonArray(p.Step, Stored(p.Loss), Stored(p.Accuracy), Stored(p.TrainAccuracy))).ToArray()),
        };
        return root.ToJsonString();
    }

    /// <summary>A value as stored: float precision is plenty for a plot and halves the text; JSON has no NaN, so a missing or non-finite value is null.</summary>
    private static float? Stored(double? x) => x is { } v && double.IsFinite(v) ? (float)v : null;

    private static double? Optional(JsonElement e) => e.ValueKind == JsonValueKind.Null ? null : e.GetDouble();

    /// <summary>Reads <see cref="ToJson"/>'s format; anything else is a one-line error from <paramref name="bad"/>.</summary>
    internal static TrainingHistory Parse(string json, Func<string, GpuRnnException> bad)
    {
        var history = new TrainingHistory();
        try
        {
            using var doc = JsonDocument.Parse(json);
            var root = doc.RootElement;
            history.Stride = root.GetProperty("stride").GetInt32();
            if (history.Stride < 1 || (history.Stride & (history.Stride - 1)) != 0)
                throw new FormatException("stride");
            foreach (var p in root.GetProperty("train").EnumerateArray())
            {
                var point = new LossPoint(p[0].GetInt64(), Optional(p[1]) ?? double.NaN, p[2].GetInt32());
                if (point.Steps < 1 || point.Steps > history.Stride || (history.train.Count > 0 && point.Step <= history.train[^1].Step))
                    throw new FormatException("train");
                history.train.Add(point);
            }
            foreach (var p in root.GetProperty("val").EnumerateArray())
            {
                history.evaluations.Add(new EvaluationPoint(p[0].GetInt64(), Optional(p[1]) ?? double.NaN, Optional(p[2]), Optional(p[3])));
            }
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException or IndexOutOfRangeException)
        {
            throw bad($"metadata '{Checkpoint.HistoryKey}' is malformed (expected {{\"stride\", \"train\": [[step, loss, steps], …], \"val\": [[step, loss, accuracy, train_accuracy], …]}})");
        }
        return history;
    }
}
