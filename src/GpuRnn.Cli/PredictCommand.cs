using System.CommandLine;
using System.Globalization;
using GpuRnn.Checkpoints;

namespace GpuRnn.Cli;

/// <summary><c>gpurnn predict</c>: one answer per input line — a label for a classifier, a continuation for a language model.</summary>
internal static class PredictCommand
{
    public static Command Create(TextWriter stdout, TextReader stdin)
    {
        var checkpoint = App.Opt<string>("--checkpoint", "The model file (.safetensors).");
        checkpoint.Required = true;
        var input = App.Opt<string?>("--input", "UTF-8 file with one input per line; without it, standard input.");
        var length = App.Opt("--length", "Language models and encoder–decoders: tokens to generate per line at most.", 100);
        var temperature = App.Opt("--temperature", "Language models: softmax temperature; 0 or less is greedy.", 0f);
        var seed = App.Opt("--seed", "Language models: random seed.", 1);
        var batch = App.Opt("--batch", "Classifiers: lines per batch.", 64);
        var device = App.Opt("--device", "auto, cuda, opencl or cpu, with an optional :index.", "auto");
        var recurrence = App.RecurrenceOpt();
        var beam = App.Opt("--beam", "Encoder–decoders: beam width of a length-normalised beam search; 1 = greedy.", 1);
        var attentionPlot = App.Opt<string?>("--attention-plot", "Encoder–decoders with attention: draw the first input's attention weights as a heat map into this PNG.");
        var cmd = new Command("predict", "For each input line: the label and its probability (classifier), the decoded target (encoder–decoder, greedy) or the model's continuation (language model).")
        {
            checkpoint, input, length, temperature, seed, batch, device, recurrence, beam, attentionPlot,
        };
        cmd.SetAction(r =>
        {
            TrainCommand.RequirePositive(r.GetValue(batch), "--batch");
            TrainCommand.RequirePositive(r.GetValue(beam), "--beam");
            if (r.GetValue(length) < 0)
                throw new GpuRnnException($"--length must be 0 or more (got {r.GetValue(length)})");
            new SamplingOptions(r.GetValue(temperature)).Validate();
            var c = Checkpoint.Load(r.GetValue(checkpoint)!);
            string? plot = r.GetValue(attentionPlot);
            if (plot is not null && c.Config.Attention == AttentionKind.None)
                throw new GpuRnnException($"--attention-plot {plot}: {c.Source} has no attention (train with --mode pairs --attention dot, general or additive)");
            string? path = r.GetValue(input);
            string text = path is not null ? TextFile.Read(path) : stdin.ReadToEnd().Replace("\r\n", "\n", StringComparison.Ordinal);
            var lines = text.Split('\n');
            if (lines.Length > 0 && lines[^1].Length == 0)
                lines = lines[..^1];
            var timeLoop = App.ParseRecurrence(r.GetValue(recurrence)!);
            using var gpu = GpuDevice.Open(r.GetValue(device)!);
            using var model = c.CreateModel(gpu);
            model.Recurrence = timeLoop;
            if (c.Config.IsClassifier)
                Classify(stdout, c, model, lines, r.GetValue(batch));
            else if (c.Config.EncoderDecoder)
                Translate(stdout, c, model, lines, r.GetValue(batch), r.GetValue(length), r.GetValue(beam), plot);
            else
                Continue(stdout, c, model, lines, r.GetValue(length), new SamplingOptions(r.GetValue(temperature), Seed: r.GetValue(seed)));
            return ExitCodes.Ok;
        });
        return cmd;
    }

    private static void Classify(TextWriter stdout, Checkpoint c, RnnModel model, string[] lines, int batch)
    {
        using var predictor = new Predictor(model);
        var seqs = new List<int[]>();
        foreach (string line in lines)
        {
            var ids = SequenceData.EncodeLine(c.Vocabulary, line, c.Tokenizer);
            seqs.Add(ids.Length > 0 ? ids : [c.Vocabulary.UnknownId >= 0 ? c.Vocabulary.UnknownId : 0]); // an empty line still gets an answer
        }
        if (seqs.Count == 0)
            return;
        var data = new SequenceBatcher(seqs, new int[seqs.Count], Math.Min(batch, seqs.Count), -1, -1, seed: 0);
        int classes = c.Config.Classes;
        int done = 0;
        foreach (var window in data.InOrder())
        {
            var logits = predictor.ClassLogits(window);
            for (int b = 0; b < window.Batch && done < seqs.Count; b++, done++)
            {
                var (best, probability, _) = ClassifierMetrics.Predict(logits.AsSpan(b * classes, classes));
                stdout.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{c.Labels[best]}\t{probability:F4}"));
            }
        }
    }

    private static void Translate(TextWriter stdout, Checkpoint c, RnnModel model, string[] lines, int batch, int length, int beam, string? plot)
    {
        using var predictor = new Predictor(model);
        var vocab = c.Vocabulary;
        int bos = vocab.IdOf(Vocabulary.Bos), eos = vocab.EndId;
        var sources = lines.Select(l => SequenceData.EncodeLine(vocab, l, c.Tokenizer)).Select(ids => ids.Length > 0 ? ids : [eos]).ToList();
        if (sources.Count == 0)
            return;
        var data = SequenceBatcher.Pairs(sources, sources.Select(_ => Array.Empty<int>()).ToList(), Math.Min(batch, sources.Count), bos, eos, seed: 0);
        int done = 0;
        foreach (var window in data.InOrder())
        {
            int count = Math.Min(window.Batch, sources.Count - done);
            var weights = plot is not null && done == 0 ? new List<float[]>() : null; // the first input is slot 0 of the first window
            IReadOnlyCollection<int> excluded = [vocab.IdOf(Vocabulary.Pad), bos];
            // The plot, if any, shows the greedy decoding's attention, also under --beam.
            var greedy = beam == 1 || weights is not null ? predictor.Decode(window.Source!, count, bos, eos, length, excluded, weights) : null;
            var decoded = beam == 1 ? greedy! : Enumerable.Range(0, count).Select(i => predictor.DecodeBeam(window.Source!, i, beam, bos, eos, length, excluded).Tokens).ToArray();
            foreach (var ids in decoded)
                stdout.WriteLine(vocab.Decode(ids, c.Tokenizer).Replace("\n", "\\n", StringComparison.Ordinal));
            if (weights is not null)
            {
                var output = greedy![0].Select(id => vocab[id]).Append(Vocabulary.Eos).Take(weights.Count).ToArray();
                AttentionPlot.Save(plot!, sources[0].Select(id => vocab[id]).ToArray(), output, weights);
            }
            done += count;
        }
    }

    private static void Continue(TextWriter stdout, Checkpoint c, RnnModel model, string[] lines, int length, SamplingOptions options)
    {
        using var generator = new Generator(model);
        foreach (string line in lines)
            stdout.WriteLine(generator.Sample(c.Vocabulary, c.Tokenizer, line, length, options, c.Mode).Replace("\n", "\\n", StringComparison.Ordinal));
    }
}
