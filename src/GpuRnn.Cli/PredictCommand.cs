using System.CommandLine;
using System.Globalization;

namespace GpuRnn.Cli;

/// <summary><c>gpurnn predict</c>: one answer per input line — a label for a classifier, a continuation for a language model.</summary>
internal static class PredictCommand
{
    public static Command Create(TextWriter stdout, TextReader stdin)
    {
        var checkpoint = new CheckpointInput();
        var input = App.Opt<string?>("--input", "UTF-8 file with one input per line; without it, standard input.");
        var length = App.Opt("--length", "Language models and encoder–decoders: tokens to generate per line at most.", 100);
        var temperature = App.Opt("--temperature", "Language models: softmax temperature. The default 0 is greedy, the most likely continuation, the same on every run (an answer, not a sample); a positive value samples as `sample` does. Encoder–decoders always decode greedily.", 0f);
        var seed = App.Opt("--seed", "Language models with --temperature above 0: random seed.", 1);
        var batch = App.Opt("--batch", "Classifiers: lines per batch.", 64);
        var device = App.Opt("--device", "auto, cuda, opencl or cpu, with an optional :index.", "auto");
        var recurrence = App.RecurrenceOpt();
        var beam = App.Opt("--beam", "Encoder–decoders: beam width of a length-normalised beam search; 1 = greedy.", 1);
        var attentionPlot = App.Opt<string?>("--attention-plot", "Encoder–decoders with attention: draw the first input's attention weights as a heat map into this PNG.");
        var cmd = new Command("predict", "For each input line: the label and its probability (classifier), the decoded target (encoder–decoder, greedy) or the model's continuation (language model).")
        {
            input, length, temperature, seed, batch, device, recurrence, beam, attentionPlot,
        };
        checkpoint.AddTo(cmd);
        cmd.SetAction(r =>
        {
            TrainCommand.RequirePositive(r.GetValue(batch), "--batch");
            TrainCommand.RequirePositive(r.GetValue(beam), "--beam");
            if (r.GetValue(length) < 0)
                throw new GpuRnnException($"--length must be 0 or more (got {r.GetValue(length)})");
            new SamplingOptions(r.GetValue(temperature)).Validate();
            // The model first: a bad checkpoint is reported before standard input is read.
            var timeLoop = App.ParseRecurrence(r.GetValue(recurrence)!);
            using var gpu = GpuDevice.Open(r.GetValue(device)!);
            using var model = TextModel.Load(checkpoint.Path(r), gpu);
            string? plot = r.GetValue(attentionPlot);
            if (plot is not null && model.Config.Attention == AttentionKind.None)
                throw new GpuRnnException($"--attention-plot {plot}: {checkpoint.Path(r)} has no attention (train with --mode pairs --attention dot, general or additive)");
            string? path = r.GetValue(input);
            string text = path is not null ? TextFile.Read(path) : stdin.ReadToEnd().Replace("\r\n", "\n", StringComparison.Ordinal);
            var lines = text.Split('\n');
            if (lines.Length > 0 && lines[^1].Length == 0)
                lines = lines[..^1];
            model.Network.Recurrence = timeLoop;
            if (model.Config.IsClassifier)
            {
                foreach (var p in model.Predict(lines, r.GetValue(batch)))
                    stdout.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{p.Label}\t{p.Probability:F4}"));
            }
            else if (model.Config.EncoderDecoder)
            {
                foreach (string target in model.Translate(lines, r.GetValue(length), r.GetValue(batch), r.GetValue(beam)))
                    stdout.WriteLine(OneLine(target));
                if (plot is not null && lines.Length > 0)
                {
                    // The plot shows the greedy decoding's attention, also under --beam.
                    var map = model.Attention(lines[0], r.GetValue(length));
                    AttentionPlot.Save(plot, map.Source, map.Output, map.Weights);
                }
            }
            else
            {
                var options = new SamplingOptions(r.GetValue(temperature), Seed: r.GetValue(seed));
                foreach (string line in lines)
                    stdout.WriteLine(OneLine(model.Sample(line, r.GetValue(length), options)));
            }
            return ExitCodes.Ok;
        });
        return cmd;
    }

    /// <summary>An answer on one output line: its line breaks written as \n.</summary>
    private static string OneLine(string text) => text.Replace("\n", "\\n", StringComparison.Ordinal);
}
