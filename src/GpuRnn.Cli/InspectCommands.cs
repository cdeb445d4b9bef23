using System.CommandLine;
using GpuRnn.Checkpoints;

namespace GpuRnn.Cli;

/// <summary><c>gpurnn devices</c> and <c>gpurnn info</c>.</summary>
internal static class InspectCommands
{
    public static Command Devices(TextWriter stdout)
    {
        var cmd = new Command("devices", "List the accelerators found, with memory, and which one 'auto' picks.");
        cmd.SetAction(_ =>
        {
            var devices = GpuDevice.List();
            var auto = devices.First(d => d.Kind != DeviceKind.OpenCL || d.IsGpu);
            foreach (var d in devices)
                stdout.WriteLine($"{(d == auto ? "*" : " ")} {d}{(d.IsGpu ? " GPU" : "")}");
            stdout.WriteLine($"auto picks {auto.Spec}");
            return ExitCodes.Ok;
        });
        return cmd;
    }

    public static Command Info(TextWriter stdout)
    {
        var checkpoint = new CheckpointInput();
        var cmd = new Command("info", "Show a checkpoint's sizes, vocabulary, training state and metadata.");
        checkpoint.AddTo(cmd);
        cmd.SetAction(r =>
        {
            var c = Checkpoint.Load(checkpoint.Path(r), allowNonFinite: true);
            var layout = new ParameterLayout(c.Config);
            string task = c.Config.IsClassifier ? $"many-to-one classifier over {c.Config.Classes} classes"
                : c.Config.EncoderDecoder ? "encoder–decoder" : "language model";
            stdout.WriteLine($"file:       {c.Source}");
            string directions = !c.Config.Bidirectional ? "" : c.Config.EncoderDecoder ? " (bidirectional encoder)" : " (bidirectional)";
            stdout.WriteLine($"model:      {Checkpoint.CellTitle(c.Config.Cell)} {task}{directions} ({Checkpoint.ModeName(c.Mode)} data), L={c.Config.Layers} H={c.Config.Hidden} V={c.Config.Vocab}, {layout.Count:N0} parameters");
            if (c.Config.Dropout > 0)
                stdout.WriteLine(FormattableString.Invariant($"dropout:    {c.Config.Dropout} (training only)"));
            if (layout.Attention is { } attention)
            {
                var tensors = attention.Tensors.Select(t => $"{t.Name} [{string.Join(", ", t.Shape)}]");
                stdout.WriteLine($"attention:  {AttentionNames.Title(attention.Kind)}: {string.Join(", ", tensors)}");
            }
            foreach (var tensor in layout.Tensors)
                stdout.WriteLine($"tensor:     {tensor.Name} [{string.Join(", ", tensor.Shape)}]");
            stdout.WriteLine($"tokenizer:  {Tokenizer.Name(c.Tokenizer)}");
            var shown = c.Vocabulary.Tokens.Take(24).Select(t => t.Replace("\n", "\\n", StringComparison.Ordinal).Replace("\t", "\\t", StringComparison.Ordinal));
            stdout.WriteLine($"vocabulary: {c.Vocabulary.Count} tokens: {string.Join(" ", shown)}{(c.Vocabulary.Count > 24 ? " …" : "")}");
            if (c.Training is { } t)
            {
                stdout.WriteLine($"training:   step {t.Step}, epoch {t.Epoch}, position {t.Position}; B={t.Batch} T={t.SeqLen}, {Checkpoint.OptimizerName(t.Optimizer.Kind)} lr={t.Optimizer.LearningRate} " +
                    $"momentum={t.Optimizer.Momentum} clip-norm={t.Optimizer.ClipNorm} clip-value={t.Optimizer.ClipValue}, val-fraction={t.ValFraction}, seed={t.Seed}" +
                    (double.IsNaN(t.BestValidationLoss) ? "" : $", best validation loss {t.BestValidationLoss:F4}"));
                if (t.Schedule is { } s)
                    stdout.WriteLine(FormattableString.Invariant($"schedule:   {s}; {t.Reductions} plateau reductions, {t.EvaluationsSinceBest} validations since the best"));
            }
            else
            {
                stdout.WriteLine("training:   none stored (weights only: usable with --init, sample, eval)");
            }
            foreach (var (name, count) in c.NonFinite)
                stdout.WriteLine($"damaged:    {name} holds {count} values that are not finite (NaN or infinity); train, sample, eval and predict refuse this file");
            foreach (var (key, value) in c.Metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            {
                if (key != Checkpoint.VocabKey)
                    stdout.WriteLine($"metadata:   {key} = {value}");
            }
            return ExitCodes.Ok;
        });
        return cmd;
    }
}
