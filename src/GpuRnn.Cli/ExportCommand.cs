using System.CommandLine;
using GpuRnn.Checkpoints;

namespace GpuRnn.Cli;

/// <summary><c>gpurnn export</c>: a checkpoint as an ONNX model for ONNX Runtime (<see cref="OnnxExport"/>).</summary>
internal static class ExportCommand
{
    public static Command Create(TextWriter stdout)
    {
        var checkpoint = new CheckpointInput();
        var onnx = App.Opt<string>("--onnx", "The ONNX file to write (replaced atomically; an existing file must be an ONNX model GpuRnn wrote).");
        onnx.Required = true;
        var cmd = new Command("export", "Write a checkpoint as an ONNX model (RNN/GRU/LSTM operators) to serve with ONNX Runtime.") { onnx };
        checkpoint.AddTo(cmd);
        cmd.SetAction(r =>
        {
            string target = r.GetValue(onnx)!;
            if (string.IsNullOrWhiteSpace(target))
                throw new GpuRnnException("--onnx: name the .onnx file to write");
            var c = Checkpoint.Load(checkpoint.Path(r));
            OnnxExport.Write(c, target);
            var config = c.Config;
            string io = config.EncoderDecoder
                ? $"{OnnxExport.SourceIds} {OnnxExport.SourceLengths} {OnnxExport.DecoderInputIds} {OnnxExport.DecoderLengths} → {OnnxExport.Logits} {States(config)}"
                    + (config.Attention == AttentionKind.None ? "" : " " + OnnxExport.AttentionWeights)
                : config.IsClassifier
                    ? $"{OnnxExport.InputIds} {OnnxExport.Lengths} → {OnnxExport.Logits} {OnnxExport.Probabilities}"
                    : $"{OnnxExport.InputIds} {OnnxExport.Lengths} {OnnxExport.InitialH}{(config.Cell == Kernels.CellKind.Lstm ? " " + OnnxExport.InitialC : "")} → {OnnxExport.Logits} {States(config)}";
            string directions = !config.Bidirectional ? "" : config.EncoderDecoder ? " (bidirectional encoder)" : " (bidirectional)";
            string attention = config.Attention == AttentionKind.None ? "" : $" with {AttentionNames.Title(config.Attention)} attention";
            stdout.WriteLine($"wrote {target}: {Checkpoint.CellTitle(config.Cell)} {Checkpoint.ModeName(c.Mode)} model{directions}{attention}, L={config.Layers} H={config.Hidden} V={config.Vocab}, ONNX opset {OnnxExport.Opset}; {io}");
            return ExitCodes.Ok;
        });
        return cmd;
    }

    private static string States(ModelConfig config) =>
        config.Cell == Kernels.CellKind.Lstm ? $"{OnnxExport.FinalH} {OnnxExport.FinalC}" : OnnxExport.FinalH;
}
