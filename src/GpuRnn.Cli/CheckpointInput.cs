using System.CommandLine;
using System.CommandLine.Parsing;

namespace GpuRnn.Cli;

/// <summary>
/// The checkpoint that <c>sample</c>, <c>eval</c>, <c>predict</c>, <c>info</c> and <c>export</c> read, given either way:
/// positionally (<c>gpurnn info FILE</c>) or as <c>--checkpoint FILE</c>. Neither, or two different files, is a
/// usage error.
/// </summary>
internal sealed class CheckpointInput
{
    private readonly Argument<string?> positional = new("checkpoint")
    {
        Description = "The model file (.safetensors); --checkpoint FILE says the same.",
        Arity = ArgumentArity.ZeroOrOne,
    };

    private readonly Option<string?> flag = App.Opt<string?>("--checkpoint", "The model file (.safetensors), as the positional argument.");

    /// <summary>Adds the argument and the option to <paramref name="command"/>, with the check that exactly one file is named.</summary>
    public void AddTo(Command command)
    {
        command.Arguments.Add(positional);
        command.Options.Insert(0, flag);
        command.Validators.Add(result =>
        {
            string? a = result.GetValue(positional), f = result.GetValue(flag);
            if (a is not null && a.StartsWith('-'))
            {
                // The parser hands a mistyped flag (--temprature) to the free argument: report it as the unknown flag it
                // is, in the parser's own words, so that App's usage messages suggest the nearest flag.
                result.AddError($"Unrecognized command or argument '{a}'.");
                return;
            }
            if (a is null && f is null)
                result.AddError($"{command.Name} needs a checkpoint: gpurnn {command.Name} FILE (or --checkpoint FILE)");
            else if (a is not null && f is not null && a != f)
                result.AddError($"{command.Name}: two checkpoints given ({a} and --checkpoint {f}); give one");
        });
    }

    /// <summary>The file named.</summary>
    public string Path(ParseResult result) => result.GetValue(positional) ?? result.GetValue(flag)!;
}
