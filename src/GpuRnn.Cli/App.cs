using System.CommandLine;
using System.CommandLine.Parsing;

namespace GpuRnn.Cli;

/// <summary>Exit codes of <c>gpurnn</c>.</summary>
public static class ExitCodes
{
    /// <summary>Success.</summary>
    public const int Ok = 0;
    /// <summary>Bad input: a flag, a data file or a checkpoint; the one-line message says which.</summary>
    public const int Error = 1;
    /// <summary>The command line itself could not be parsed.</summary>
    public const int Usage = 2;
    /// <summary>Training diverged (NaN or Inf loss or gradient norm); the last good checkpoint was kept.</summary>
    public const int Diverged = 3;
    /// <summary>Interrupted (Ctrl-C / SIGTERM) after writing a resumable checkpoint.</summary>
    public const int Interrupted = 130;
}

/// <summary>The <c>gpurnn</c> command line: train, sample, eval, devices, info.</summary>
public static class App
{
    /// <summary>Runs a command line; output goes to <paramref name="stdout"/>, errors to <paramref name="stderr"/> as one line each. <c>train</c> stops cleanly on SIGINT/SIGTERM.</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr) => Run(args, stdout, stderr, CancellationToken.None);

    /// <summary>
    /// As <see cref="Run(string[], TextWriter, TextWriter)"/>, but <c>train</c> stops when
    /// <paramref name="stop"/> is cancelled (after the current step, saving a resumable checkpoint,
    /// exit code <see cref="ExitCodes.Interrupted"/>) instead of listening for signals; a token that
    /// cannot be cancelled means "listen for SIGINT/SIGTERM".
    /// </summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken stop)
    {
        var root = new RootCommand("gpurnn: train and use recurrent models (Elman RNN, GRU, LSTM) on the GPU (CUDA, OpenCL) or the CPU.")
        {
            TrainCommand.Create(stdout, stop),
            SampleCommand.Create(stdout),
            EvalCommand.Create(stdout),
            PredictCommand.Create(stdout, Console.In),
            InspectCommands.Devices(stdout),
            InspectCommands.Info(stdout),
        };
        ParseResult parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (var error in parsed.Errors)
                stderr.WriteLine($"gpurnn: {error.Message}");
            stderr.WriteLine("gpurnn: see 'gpurnn --help'");
            return ExitCodes.Usage;
        }
        try
        {
            return parsed.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
        }
        catch (GpuRnnException e)
        {
            stderr.WriteLine($"gpurnn: {e.Message}");
            return ExitCodes.Error;
        }
        catch (DivergedException e)
        {
            stderr.WriteLine($"gpurnn: {e.Message}");
            return ExitCodes.Diverged;
        }
    }

    /// <summary>An option with a description and a default shown in --help.</summary>
    internal static Option<T> Opt<T>(string name, string description, T defaultValue) =>
        new(name) { Description = description, DefaultValueFactory = _ => defaultValue };

    /// <summary>An option without a default.</summary>
    internal static Option<T> Opt<T>(string name, string description) => new(name) { Description = description };

    /// <summary>The <c>--recurrence</c> option of every command that runs a model (<see cref="RnnModel.Recurrence"/>).</summary>
    internal static Option<string> RecurrenceOpt() =>
        Opt("--recurrence", "How each layer's time loop runs: per-step (one launch per step), fused (one launch per layer and direction for all steps) or auto (fused on a GPU for Elman/GRU layers with H ≤ 128, else per-step: measured on an H200); the results are the same.", "auto");

    /// <summary>The value of <see cref="RecurrenceOpt"/>.</summary>
    internal static Recurrence ParseRecurrence(string name) =>
        RecurrenceNames.Parse(name) ?? throw new GpuRnnException($"--recurrence {name}: use per-step, fused or auto");

    /// <summary>Whether the user typed the option (as opposed to its default applying).</summary>
    internal static bool Given(ParseResult r, Option o) => r.GetResult(o) is { Implicit: false };
}
