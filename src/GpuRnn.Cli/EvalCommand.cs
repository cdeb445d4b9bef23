using System.CommandLine;
using System.Text.Json;
using GpuRnn.Checkpoints;

namespace GpuRnn.Cli;

/// <summary><c>gpurnn eval</c>: loss and perplexity of a checkpoint on a text file.</summary>
internal static class EvalCommand
{
    public static Command Create(TextWriter stdout)
    {
        var checkpoint = App.Opt<string>("--checkpoint", "The model file (.safetensors).");
        checkpoint.Required = true;
        var data = App.Opt<string>("--data", "UTF-8 text file to evaluate on.");
        data.Required = true;
        var batch = App.Opt("--batch", "Parallel streams B.", 32);
        var seqLen = App.Opt("--seq-len", "Window length T (the hidden state is carried across windows).", 64);
        var device = App.Opt("--device", "auto, cuda, opencl or cpu, with an optional :index.", "auto");
        var json = App.Opt("--json", "Print one JSON object {\"loss\", \"perplexity\", \"tokens\"}.", false);
        var cmd = new Command("eval", "Mean cross-entropy per predicted token and perplexity of a model on a text file.") { checkpoint, data, batch, seqLen, device, json };
        cmd.SetAction(r =>
        {
            TrainCommand.RequirePositive(r.GetValue(batch), "--batch");
            TrainCommand.RequirePositive(r.GetValue(seqLen), "--seq-len");
            var c = Checkpoint.Load(r.GetValue(checkpoint)!);
            string text = TextFile.Read(r.GetValue(data)!);
            var ids = c.Vocabulary.Encode(text, c.Tokenizer);
            using var gpu = GpuDevice.Open(r.GetValue(device)!);
            using var model = c.CreateModel(gpu);
            using var trainer = new Trainer(model, new OptimizerSettings(OptimizerKind.Sgd, 1f));
            var (loss, tokens) = trainer.Evaluate(ids, r.GetValue(batch), r.GetValue(seqLen));
            if (r.GetValue(json))
                stdout.WriteLine(JsonSerializer.Serialize(new { loss, perplexity = Math.Exp(loss), tokens }));
            else
                stdout.WriteLine($"loss {loss:F4} nats/token, perplexity {Math.Exp(loss):F3}, {tokens} tokens predicted ({gpu.Info})");
            return ExitCodes.Ok;
        });
        return cmd;
    }
}
