using System.CommandLine;
using System.Text.Json;
using GpuRnn.Checkpoints;

namespace GpuRnn.Cli;

/// <summary><c>gpurnn eval</c>: loss and perplexity of a checkpoint on a text file.</summary>
internal static class EvalCommand
{
    public static Command Create(TextWriter stdout)
    {
        var checkpoint = new CheckpointInput();
        var data = App.Opt<string>("--data", "UTF-8 text file to evaluate on.");
        data.Required = true;
        var batch = App.Opt("--batch", "Parallel streams B.", 32);
        var seqLen = App.Opt("--seq-len", "Window length T (the hidden state is carried across windows).", 64);
        var device = App.Opt("--device", "auto, cuda, opencl or cpu, with an optional :index.", "auto");
        var recurrence = App.RecurrenceOpt();
        var json = App.Opt("--json", "Print one JSON object, whose fields depend on the model's mode. " +
            "stream and lines (language model): {\"loss\": nats per predicted token, \"perplexity\": exp(loss), \"tokens\": tokens predicted}. " +
            "labeled (classifier): {\"loss\": nats per sequence, \"accuracy\", \"count\": sequences, \"per_class\": {label: {\"precision\", \"recall\", \"f1\"}}, " +
            "\"confusion\": rows true class, columns predicted, in the model's label order}; a precision or recall with nothing to divide by is null. " +
            "pairs (encoder–decoder): {\"loss\": nats per target token, \"perplexity\", \"exact_match\": fraction of targets decoded exactly (greedy), " +
            "\"token_accuracy\", \"pairs\", \"tokens\"}.", false);
        var cmd = new Command("eval", "Score a model on a text file in its mode: loss and perplexity for language models (stream, lines); accuracy, per-class precision/recall/F1 and the confusion matrix for classifiers (labeled); exact match and token accuracy for encoder–decoders (pairs).") { data, batch, seqLen, device, recurrence, json };
        checkpoint.AddTo(cmd);
        cmd.SetAction(r =>
        {
            TrainCommand.RequirePositive(r.GetValue(batch), "--batch");
            TrainCommand.RequirePositive(r.GetValue(seqLen), "--seq-len");
            var c = Checkpoint.Load(checkpoint.Path(r));
            string dataPath = r.GetValue(data)!;
            string text = TextFile.Read(dataPath);
            var timeLoop = App.ParseRecurrence(r.GetValue(recurrence)!);
            using var gpu = GpuDevice.Open(r.GetValue(device)!);
            using var model = c.CreateModel(gpu);
            model.Recurrence = timeLoop;
            using var predictor = new Predictor(model);
            int b = r.GetValue(batch);
            switch (c.Mode)
            {
                case DataMode.Labeled:
                {
                    var (classes, rows) = SequenceData.SplitLabeled(text, dataPath);
                    var unknown = classes.Where(l => !c.Labels.Contains(l)).ToArray();
                    if (unknown.Length > 0)
                        throw new GpuRnnException($"{dataPath}: label '{unknown[0]}' is not one of the model's [{string.Join(", ", c.Labels)}]");
                    var seqs = rows.Select(row => SequenceData.EncodeLine(c.Vocabulary, row.Text, c.Tokenizer)).ToList();
                    int empty = seqs.FindIndex(s => s.Length == 0);
                    if (empty >= 0)
                        throw new GpuRnnException($"{dataPath}:{rows[empty].Line}: the text after the TAB is empty");
                    var labels = rows.Select(row => c.Labels.ToList().IndexOf(row.Label)).ToList();
                    var metrics = ClassifierMetrics.Compute(predictor, new SequenceBatcher(seqs, labels, b, -1, -1, 0), c.Labels);
                    if (r.GetValue(json))
                        stdout.WriteLine(JsonSerializer.Serialize(metrics.ToDictionary()));
                    else
                        stdout.WriteLine(metrics.Report());
                    break;
                }
                case DataMode.Lines:
                {
                    var seqs = SequenceData.Lines(text).Select(l => SequenceData.EncodeLine(c.Vocabulary, l.Text, c.Tokenizer)).ToList();
                    if (seqs.Count == 0)
                        throw new GpuRnnException($"{dataPath}: no non-empty lines");
                    var data = new SequenceBatcher(seqs, null, b, c.Vocabulary.IdOf(Vocabulary.Bos), c.Vocabulary.EndId, 0);
                    Print(predictor.Evaluate(data.InOrder()));
                    break;
                }
                case DataMode.Pairs:
                {
                    var rows = SequenceData.SplitPairs(text, dataPath);
                    var sources = rows.Select(row => SequenceData.EncodeLine(c.Vocabulary, row.Source, c.Tokenizer)).ToList();
                    var targets = rows.Select(row => SequenceData.EncodeLine(c.Vocabulary, row.Target, c.Tokenizer)).ToList();
                    int empty = sources.FindIndex(x => x.Length == 0);
                    if (empty >= 0)
                        throw new GpuRnnException($"{dataPath}:{rows[empty].Line}: the source before the TAB is empty");
                    int bos = c.Vocabulary.IdOf(Vocabulary.Bos), eos = c.Vocabulary.EndId;
                    var m = PairMetrics.Compute(predictor, SequenceBatcher.Pairs(sources, targets, b, bos, eos, 0), targets, bos, eos, [c.Vocabulary.IdOf(Vocabulary.Pad), bos]);
                    if (r.GetValue(json))
                        stdout.WriteLine(JsonSerializer.Serialize(new { loss = m.Loss, perplexity = Math.Exp(m.Loss), exact_match = m.ExactMatch, token_accuracy = m.TokenAccuracy, pairs = m.Pairs, tokens = m.Tokens }));
                    else
                        stdout.WriteLine(m.Report());
                    break;
                }
                case DataMode.Stream:
                    Print(predictor.Evaluate(c.Vocabulary.Encode(text, c.Tokenizer), b, r.GetValue(seqLen)));
                    break;
                default:
                    throw new ArgumentOutOfRangeException(nameof(c.Mode), c.Mode, "unknown mode");
            }

            void Print((double Loss, long Tokens) result)
            {
                var (loss, tokens) = result;
                if (r.GetValue(json))
                    stdout.WriteLine(JsonSerializer.Serialize(new { loss, perplexity = Math.Exp(loss), tokens }));
                else
                    stdout.WriteLine($"loss {loss:F4} nats/token, perplexity {Math.Exp(loss):F3}, {tokens} tokens predicted ({gpu.Info})");
            }
            return ExitCodes.Ok;
        });
        return cmd;
    }
}
