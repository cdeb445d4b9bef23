using System.CommandLine;
using System.CommandLine.Invocation;
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

/// <summary>The <c>gpurnn</c> command line: train, sample, eval, predict, devices, info, export.</summary>
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
            ExportCommand.Create(stdout),
        };
        root.Options.OfType<VersionOption>().Single().Action = new PrintVersion(stdout);
        ParseResult parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (string message in UsageMessages(parsed, args))
                stderr.WriteLine($"gpurnn: {message}");
            stderr.WriteLine("gpurnn: see 'gpurnn --help'");
            return ExitCodes.Usage;
        }
        try
        {
            return parsed.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
        }
        catch (GpuRnnException e)
        {
            stderr.WriteLine($"gpurnn: {(e.Parameter is { } p && SettingFlags.TryGetValue(p, out string? flag) ? $"{flag} {e.Problem}" : e.Message)}");
            return ExitCodes.Error;
        }
        catch (DivergedException e)
        {
            stderr.WriteLine($"gpurnn: {e.Message}");
            return ExitCodes.Diverged;
        }
    }

    /// <summary>The flag of each library setting that a <see cref="GpuRnnException.Parameter"/> names.</summary>
    private static readonly Dictionary<string, string> SettingFlags = new(StringComparer.Ordinal)
    {
        [nameof(OptimizerSettings.LearningRate)] = "--lr",
        [nameof(OptimizerSettings.Momentum)] = "--momentum",
        [nameof(OptimizerSettings.ClipNorm)] = "--clip-norm",
        [nameof(OptimizerSettings.ClipValue)] = "--clip-value",
        [nameof(SamplingOptions.Temperature)] = "--temperature",
        [nameof(SamplingOptions.TopK)] = "--top-k",
        [nameof(SamplingOptions.TopP)] = "--top-p",
        ["batch"] = "--batch",
        ["seqLen"] = "--seq-len",
        ["length"] = "--length",
        ["maxSize"] = "--max-vocab",
        ["minCount"] = "--min-count",
        ["device"] = "--device",
        ["optimizer"] = "--optimizer",
        ["cell"] = "--cell",
        ["mode"] = "--mode",
        ["tokenizer"] = "--tokenizer",
    };

    /// <summary>
    /// The parser's errors in the words of this program: a value of the wrong type says what is expected ("a number"),
    /// not a .NET type name; an unknown flag suggests the nearest flag of its command (and the value that followed it
    /// is not reported a second time).
    /// </summary>
    private static IEnumerable<string> UsageMessages(ParseResult parsed, string[] args)
    {
        var flags = parsed.CommandResult.Command.Options.Select(o => o.Name).Where(n => n.StartsWith("--", StringComparison.Ordinal)).ToList();
        var unknownFlags = parsed.Errors.Select(e => System.Text.RegularExpressions.Regex.Match(e.Message, "^Unrecognized command or argument '(--.*)'\\.?$"))
            .Where(m => m.Success).Select(m => Array.IndexOf(args, m.Groups[1].Value)).ToHashSet(); // first, whatever order the errors come in
        foreach (var error in parsed.Errors)
        {
            var typed = System.Text.RegularExpressions.Regex.Match(error.Message, "^Cannot parse argument '(.*)' for option '(.*)' as expected type '(.*)'\\.?$");
            if (typed.Success)
            {
                string expected = typed.Groups[3].Value switch
                {
                    "System.Single" or "System.Double" => "a number",
                    "System.Int32" or "System.Int64" => "an integer",
                    "System.Boolean" => "true or false",
                    _ => "another kind of value",
                };
                yield return $"{typed.Groups[2].Value} {typed.Groups[1].Value}: expected {expected}";
                continue;
            }
            var unknown = System.Text.RegularExpressions.Regex.Match(error.Message, "^Unrecognized command or argument '(.*)'\\.?$");
            if (unknown.Success)
            {
                string token = unknown.Groups[1].Value;
                int at = Array.IndexOf(args, token);
                if (!token.StartsWith('-') && at > 0 && unknownFlags.Contains(at - 1))
                    continue; // the value of an unknown flag
                if (token.StartsWith("--", StringComparison.Ordinal))
                {
                    string? near = flags.OrderBy(f => EditDistance(f, token)).FirstOrDefault();
                    yield return near is not null && EditDistance(near, token) <= Math.Max(2, token.Length / 4)
                        ? $"unknown flag {token}; did you mean {near}?"
                        : $"unknown flag {token}";
                    continue;
                }
            }
            yield return error.Message;
        }
    }

    /// <summary><c>gpurnn --version</c>: the GpuRnn version (and commit) and the ILGPU version, where the built-in option prints only the first.</summary>
    private sealed class PrintVersion(TextWriter stdout) : SynchronousCommandLineAction
    {
        public override int Invoke(ParseResult parseResult)
        {
            stdout.WriteLine(Versions.Summary);
            return ExitCodes.Ok;
        }
    }

    /// <summary>Levenshtein distance (insertions, deletions, substitutions).</summary>
    internal static int EditDistance(string a, string b)
    {
        var row = Enumerable.Range(0, b.Length + 1).ToArray();
        for (int i = 1; i <= a.Length; i++)
        {
            int diagonal = row[0];
            row[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                int above = row[j];
                row[j] = Math.Min(Math.Min(row[j] + 1, row[j - 1] + 1), diagonal + (a[i - 1] == b[j - 1] ? 0 : 1));
                diagonal = above;
            }
        }
        return row[b.Length];
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
