using System.CommandLine;
using GpuRnn.Checkpoints;

namespace GpuRnn.Cli;

/// <summary><c>gpurnn sample</c>: one-to-many generation from a checkpoint.</summary>
internal static class SampleCommand
{
    public static Command Create(TextWriter stdout)
    {
        var checkpoint = new CheckpointInput();
        var prime = App.Opt("--prime", "Text the model reads before it starts sampling (empty: start from a newline).", "");
        var length = App.Opt("--length", "Tokens (characters or words) to generate at most; a line model stops early at <eos>.", 500);
        var temperature = App.Opt("--temperature", "Softmax temperature. The default 1 samples from the model's own distribution; lower is more conservative (train's preview uses 0.8), higher more varied; 0 or less is greedy (always the most likely token).", 1f);
        var topK = App.Opt("--top-k", "Sample among the K most likely tokens only; 0 = all.", 0);
        var topP = App.Opt("--top-p", "Nucleus sampling: smallest set of tokens with probability ≥ P; 1 = all.", 1f);
        var seed = App.Opt("--seed", "Random seed: the same seed gives the same text.", 1);
        var count = App.Opt("--count", "Number of samples.", 1);
        var device = App.Opt("--device", "auto, cuda, opencl or cpu, with an optional :index.", "auto");
        var recurrence = App.RecurrenceOpt();
        var cmd = new Command("sample", "Generate text from a trained model.") { prime, length, temperature, topK, topP, seed, count, device, recurrence };
        checkpoint.AddTo(cmd);
        cmd.SetAction(r =>
        {
            if (r.GetValue(count) < 1)
                throw new GpuRnnException($"--count must be at least 1 (got {r.GetValue(count)})");
            var options = new SamplingOptions(r.GetValue(temperature), r.GetValue(topK), r.GetValue(topP), r.GetValue(seed));
            options.Validate();
            var c = Checkpoint.Load(checkpoint.Path(r));
            try
            {
                c.Vocabulary.Encode(r.GetValue(prime)!, c.Tokenizer); // unknown tokens become <unk>; without one, say so before opening the device
            }
            catch (GpuRnnException e)
            {
                const string prefix = "text: ";
                throw new GpuRnnException($"--prime: {(e.Message.StartsWith(prefix, StringComparison.Ordinal) ? e.Message[prefix.Length..] : e.Message)} of {c.Source}", e);
            }
            var timeLoop = App.ParseRecurrence(r.GetValue(recurrence)!);
            using var gpu = GpuDevice.Open(r.GetValue(device)!);
            using var model = c.CreateModel(gpu);
            model.Recurrence = timeLoop;
            using var generator = new Generator(model);
            for (int i = 0; i < r.GetValue(count); i++)
            {
                if (i > 0)
                    stdout.WriteLine("---");
                string primeText = r.GetValue(prime)!;
                string text = generator.Sample(c.Vocabulary, c.Tokenizer, primeText, r.GetValue(length), options with { Seed = options.Seed + i }, c.Mode);
                stdout.WriteLine(primeText + text);
            }
            return ExitCodes.Ok;
        });
        return cmd;
    }
}
