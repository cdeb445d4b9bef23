using GpuRnn.Cli;
using NUnit.Framework;

namespace GpuRnn.Tests;

/// <summary>A temporary folder with a small training text, and the gpurnn command line run in-process on it.</summary>
public abstract class CliHarness
{
    /// <summary>Tiny but real: the first 600 characters of the embedded Shakespeare.</summary>
    protected static readonly string Text = DefaultCorpus.Text[..600];

    /// <summary>A 1-layer, H=8 model in windows of B=3, T=7 on the CPU accelerator, without the final sample.</summary>
    protected static readonly string[] Tiny = ["--device", "cpu", "--hidden", "8", "--layers", "1", "--batch", "3", "--seq-len", "7", "--length", "0"];

    protected string Dir { get; private set; } = null!;

    /// <summary>The training text <see cref="Text"/> as a file.</summary>
    protected string Data { get; private set; } = null!;

    [SetUp]
    public void MakeFolder()
    {
        Dir = Path.Combine(Path.GetTempPath(), "gpurnn-rel-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Dir);
        Data = P("data.txt");
        File.WriteAllText(Data, Text);
    }

    [TearDown]
    public void RemoveFolder() => Directory.Delete(Dir, recursive: true);

    protected string P(string name) => Path.Combine(Dir, name);

    protected static (int Code, string Out, string Err) Run(params string[] args) => Run(CancellationToken.None, args);

    protected static (int Code, string Out, string Err) Run(CancellationToken stop, params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = App.Run(args, stdout, stderr, stop);
        return (code, stdout.ToString(), stderr.ToString());
    }

    /// <summary><c>train</c> with <see cref="Tiny"/>, where <paramref name="args"/> (flag-value pairs, or a lone flag) override its values.</summary>
    protected static (int Code, string Out, string Err) Train(params string[] args) => Run(CancellationToken.None, ["train", .. Merge(Tiny, args)]);

    /// <summary>Options of <paramref name="defaults"/> overridden by those of <paramref name="args"/>, in order.</summary>
    protected static string[] Merge(string[] defaults, string[] args)
    {
        var options = new List<KeyValuePair<string, string?>>();
        void Add(string[] list)
        {
            for (int i = 0; i < list.Length; i++)
            {
                string key = list[i];
                string? value = i + 1 < list.Length && !list[i + 1].StartsWith("--", StringComparison.Ordinal) ? list[++i] : null;
                int at = options.FindIndex(kv => kv.Key == key);
                var entry = KeyValuePair.Create(key, value);
                if (at >= 0)
                    options[at] = entry;
                else
                    options.Add(entry);
            }
        }
        Add(defaults);
        Add(args);
        return [.. options.SelectMany(kv => kv.Value is null ? new[] { kv.Key } : new[] { kv.Key, kv.Value })];
    }

    /// <summary>Exit code 1 and exactly one stderr line that starts with "gpurnn: " and contains every fragment.</summary>
    protected static void AssertOneLineError((int Code, string Out, string Err) result, params string[] fragments)
    {
        Assert.That(result.Code, Is.EqualTo(ExitCodes.Error), result.Err + result.Out);
        Assert.That(result.Err.TrimEnd('\n').Split('\n'), Has.Length.EqualTo(1), "one line, no stack trace: " + result.Err);
        Assert.That(result.Err, Does.StartWith("gpurnn: "));
        foreach (string f in fragments)
            Assert.That(result.Err, Does.Contain(f));
    }
}
