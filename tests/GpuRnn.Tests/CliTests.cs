using System.Text.Json;
using GpuRnn.Checkpoints;
using GpuRnn.Cli;
using GpuRnn.Tests.Reference;
using NUnit.Framework;

namespace GpuRnn.Tests;

/// <summary>The gpurnn command line, run in-process on the CPU accelerator with tiny models.</summary>
public sealed class CliTests
{
    private string dir = null!;
    private string data = null!;

    /// <summary>Tiny but real: the first 600 characters of the embedded Shakespeare.</summary>
    private static readonly string Text = DefaultCorpus.Text[..600];

    private static readonly string[] Tiny = ["--device", "cpu", "--hidden", "8", "--layers", "1", "--batch", "3", "--seq-len", "7", "--length", "0"];

    [SetUp]
    public void MakeFolder()
    {
        dir = Path.Combine(Path.GetTempPath(), "gpurnn-cli-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        data = Path.Combine(dir, "data.txt");
        File.WriteAllText(data, Text);
    }

    [TearDown]
    public void RemoveFolder() => Directory.Delete(dir, recursive: true);

    private string P(string name) => Path.Combine(dir, name);

    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = App.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    private static (int Code, string Out, string Err) Train(params string[] args) => Run(["train", .. Tiny, .. args]);

    [Test]
    public void TrainWritesCheckpointPlotLogAndJsonLines()
    {
        var (code, output, error) = Train("--data", data, "--steps", "6", "--val-fraction", "0.2", "--eval-every", "3", "--out", P("m/model.safetensors"), "--log", P("log.jsonl"), "--json");
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), error);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines.Select(l => JsonDocument.Parse(l).RootElement).Last().GetProperty("event").GetString(), Is.EqualTo("summary"), "every stdout line is JSON");
        Assert.That(output, Does.Not.Contain("\u001b"), "no control characters off a terminal");
        var log = File.ReadAllLines(P("log.jsonl")).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.That(log.Select(e => e.GetProperty("step").GetInt64()), Is.EqualTo(new long[] { 1, 2, 3, 4, 5, 6 }));
        Assert.That(log[2].GetProperty("val_loss").ValueKind, Is.EqualTo(JsonValueKind.Number), "validated at step 3");
        Assert.That(File.ReadAllBytes(P("m/model.loss.png"))[..4], Is.EqualTo(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }));
        var c = Checkpoint.Load(P("m/model.safetensors"));
        Assert.That(c.Training!.Step, Is.EqualTo(6));
        Assert.That(c.Config, Is.EqualTo(new ModelConfig(c.Vocabulary.Count, 8, 1)));
    }

    [Test]
    public void DefaultRunTrainsOnTheEmbeddedCorpusAndPrintsASample()
    {
        var (code, output, error) = Run("train", "--device", "cpu", "--hidden", "8", "--layers", "1", "--batch", "4", "--seq-len", "8", "--steps", "3",
            "--val-fraction", "0", "--length", "40", "--out", P("default.safetensors"));
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), error);
        Assert.That(output, Does.Contain(DefaultCorpus.Name).And.Contain("sample (temperature 0.8):").And.Contain("tokens_per_s"));
    }

    /// <summary>
    /// DESIGN.md §6 end to end: from a checkpoint's weights, N steps of the runner on a text file must
    /// give the weights that PyTorch (nn.RNN + nn.Linear, one-hot input, mean cross-entropy, torch.optim,
    /// clip_grad_norm_) gives; the double-precision reference implements exactly that recipe.
    /// </summary>
    [TestCase("sgd", 0.5f, 1f)]
    [TestCase("adam", 0.01f, 0.5f)]
    public void InitRunFollowsTheReferenceRecipe(string optimizer, float lr, float clipNorm)
    {
        var vocab = Vocabulary.FromText(Text);
        var ids = vocab.Encode(Text);
        using (var device = GpuDevice.Open("cpu"))
        using (var model = new RnnModel(device, new ModelConfig(vocab.Count, 8, 2), seed: 9))
            Checkpoint.Save(P("init.safetensors"), model, vocab, TokenizerKind.Char);
        var init = Checkpoint.Load(P("init.safetensors"));
        const int steps = 30; // 600 chars / B=3 → n = 200, 29 windows of 7: crosses an epoch boundary
        var (code, _, error) = Run("train", "--device", "cpu", "--batch", "3", "--seq-len", "7", "--length", "0", "--init", P("init.safetensors"),
            "--data", data, "--val-fraction", "0", "--steps", $"{steps}", "--optimizer", optimizer, "--lr", $"{lr}", "--clip-norm", $"{clipNorm}", "--out", P("out.safetensors"));
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), error);

        var reference = RefModel.FromFloats(vocab.Count, 8, 2, init.Weights.ToDictionary(kv => kv.Key, kv => kv.Value));
        var opt = new RefOptimizer(optimizer == "sgd" ? RefOptimizerKind.Sgd : RefOptimizerKind.Adam, lr);
        var windows = RefStream.Windows(ids, 3, 7);
        double[][]? h = null;
        for (int step = 0; step < steps; step++)
        {
            if (step % windows.Count == 0)
                h = null;
            var (inputs, targets) = windows[step % windows.Count];
            var r = RefRnn.ForwardBackward(reference, inputs, targets, h);
            h = r.HFinal;
            RefClip.ClipGradNorm(r.Grads, clipNorm);
            opt.Step(reference, r.Grads);
        }
        var trained = Checkpoint.Load(P("out.safetensors"));
        foreach (var (name, expected) in reference.Params)
        {
            var actual = trained.Weights[name];
            for (int i = 0; i < actual.Length; i++)
                Assert.That(actual[i], Is.EqualTo(expected[i]).Within(2e-4), $"{name}[{i}] after {steps} {optimizer} steps");
        }
    }

    [Test]
    public void ResumeContinuesBitIdentically()
    {
        string[] common = ["--data", data, "--val-fraction", "0.1", "--eval-every", "2", "--optimizer", "adam", "--lr", "0.01"];
        Assert.That(Train([.. common, "--steps", "8", "--out", P("straight.safetensors")]).Code, Is.EqualTo(0));
        Assert.That(Train([.. common, "--steps", "5", "--out", P("first.safetensors")]).Code, Is.EqualTo(0));
        var (code, output, error) = Run("train", "--device", "cpu", "--resume", P("first.safetensors"), "--data", data, "--steps", "8", "--length", "0", "--out", P("resumed.safetensors"));
        Assert.That(code, Is.EqualTo(0), error);
        Assert.That(output, Does.Contain("resuming at step 5"));
        var a = Checkpoint.Load(P("straight.safetensors"));
        var b = Checkpoint.Load(P("resumed.safetensors"));
        foreach (var (name, w) in a.Weights)
            Assert.That(b.Weights[name], Is.EqualTo(w).AsCollection, $"{name} must be bit-identical");
        Assert.That(b.Training, Is.EqualTo(a.Training));
    }

    /// <summary>--recurrence fused trains the same weights as per-step (bit for bit on the CPU accelerator) and eval takes it too; a bad value is one line.</summary>
    [Test]
    public void FusedRecurrenceTrainsTheSameWeightsAsPerStep()
    {
        string[] common = ["--data", data, "--cell", "gru", "--val-fraction", "0.2", "--eval-every", "2", "--steps", "3"];
        Assert.That(Train([.. common, "--recurrence", "per-step", "--out", P("p.safetensors")]).Code, Is.EqualTo(0));
        var (code, _, error) = Train([.. common, "--recurrence", "fused", "--out", P("f.safetensors")]);
        Assert.That(code, Is.EqualTo(0), error);
        var a = Checkpoint.Load(P("p.safetensors"));
        var b = Checkpoint.Load(P("f.safetensors"));
        foreach (var (name, w) in a.Weights)
            Assert.That(b.Weights[name], Is.EqualTo(w).AsCollection, $"{name} must be bit-identical");
        string Eval(string recurrence) => Run("eval", "--checkpoint", P("p.safetensors"), "--data", data, "--batch", "2", "--seq-len", "9", "--device", "cpu", "--json", "--recurrence", recurrence).Out;
        Assert.That(Eval("fused"), Is.EqualTo(Eval("per-step")));
        var bad = Train([.. common, "--recurrence", "fast", "--out", P("x.safetensors")]);
        Assert.That(bad.Code, Is.Not.EqualTo(0));
        Assert.That(bad.Err, Does.Contain("--recurrence fast: use per-step, fused or auto"));
    }

    [Test]
    public void ResumeRefusesConflictingSizes()
    {
        Assert.That(Train("--data", data, "--steps", "2", "--out", P("m.safetensors")).Code, Is.EqualTo(0));
        var (code, _, error) = Run("train", "--device", "cpu", "--resume", P("m.safetensors"), "--data", data, "--hidden", "16", "--steps", "3");
        Assert.That(code, Is.EqualTo(ExitCodes.Error));
        Assert.That(error.Trim(), Does.StartWith("gpurnn: --hidden 16 conflicts with").And.Not.Contain("\n"));
    }

    [Test]
    public void SampleIsSeededAndCounted()
    {
        Assert.That(Train("--data", data, "--steps", "3", "--val-fraction", "0", "--out", P("m.safetensors")).Code, Is.EqualTo(0));
        string[] args = ["sample", "--checkpoint", P("m.safetensors"), "--device", "cpu", "--prime", "First", "--length", "30", "--seed", "4", "--count", "2"];
        var first = Run(args);
        Assert.That(first.Code, Is.EqualTo(0), first.Err);
        Assert.That(Run(args).Out, Is.EqualTo(first.Out));
        var samples = first.Out.Split("---\n");
        Assert.That(samples, Has.Length.EqualTo(2));
        Assert.That(samples.All(s => s.StartsWith("First", StringComparison.Ordinal)), Is.True);
        Assert.That(Run([.. args[..^2], "--seed", "5"]).Out, Is.Not.EqualTo(first.Out));
    }

    [Test]
    public void EvalReportsTheReferenceLoss()
    {
        Assert.That(Train("--data", data, "--steps", "2", "--val-fraction", "0", "--out", P("m.safetensors")).Code, Is.EqualTo(0));
        var (code, output, error) = Run("eval", "--checkpoint", P("m.safetensors"), "--data", data, "--batch", "2", "--seq-len", "9", "--device", "cpu", "--json");
        Assert.That(code, Is.EqualTo(0), error);
        var json = JsonDocument.Parse(output).RootElement;
        var c = Checkpoint.Load(P("m.safetensors"));
        var reference = RefModel.FromFloats(c.Config.Vocab, c.Config.Hidden, c.Config.Layers, c.Weights.ToDictionary(kv => kv.Key, kv => kv.Value));
        double sum = 0;
        long tokens = 0;
        double[][]? h = null;
        foreach (var (inputs, targets) in RefStream.Windows(c.Vocabulary.Encode(Text), 2, 9))
        {
            var r = RefRnn.ForwardBackward(reference, inputs, targets, h);
            h = r.HFinal;
            sum += r.Loss * targets.Length;
            tokens += targets.Length;
        }
        Assert.That(json.GetProperty("tokens").GetInt64(), Is.EqualTo(tokens));
        Assert.That(json.GetProperty("loss").GetDouble(), Is.EqualTo(sum / tokens).Within(1e-5));
        Assert.That(json.GetProperty("perplexity").GetDouble(), Is.EqualTo(Math.Exp(sum / tokens)).Within(1e-4));
    }

    /// <summary>How a PyTorch model comes in: only the state_dict tensors and gpurnn.vocab, no special tokens.</summary>
    [Test]
    public void WeightsOnlyCheckpointWorksEverywhere()
    {
        const int h = 6;
        string[] tokens = [.. Text.Distinct().Order().Select(ch => ch.ToString())];
        int v = tokens.Length;
        var rng = new Random(3);
        var tensors = new ParameterLayout(v, h, 1).Tensors.Select(t => new TensorEntry(t.Name, t.Shape, TestData.Uniform(rng, t.Length, 0.3))).ToList();
        new SafeTensorsFile(tensors, new Dictionary<string, string> { [Checkpoint.VocabKey] = JsonSerializer.Serialize(tokens) }).Write(P("torch.safetensors"));

        var info = Run("info", "--checkpoint", P("torch.safetensors"));
        Assert.That(info.Code, Is.EqualTo(0), info.Err);
        Assert.That(info.Out, Does.Contain($"L=1 H={h} V={v}").And.Contain("weights only"));
        var sample = Run("sample", "--checkpoint", P("torch.safetensors"), "--device", "cpu", "--length", "20");
        Assert.That(sample.Code, Is.EqualTo(0), sample.Err);
        Assert.That(sample.Out.TrimEnd('\n').Length, Is.GreaterThan(0));
        Assert.That(Run("eval", "--checkpoint", P("torch.safetensors"), "--data", data, "--device", "cpu", "--batch", "2", "--seq-len", "5").Code, Is.EqualTo(0));
        var train = Run("train", "--device", "cpu", "--init", P("torch.safetensors"), "--data", data, "--steps", "2", "--batch", "3", "--seq-len", "7", "--length", "5", "--out", P("tuned.safetensors"));
        Assert.That(train.Code, Is.EqualTo(0), train.Err);
        Assert.That(Checkpoint.Load(P("tuned.safetensors")).Vocabulary.Tokens, Is.EqualTo(tokens), "the checkpoint's vocabulary wins");
    }

    [Test]
    public void DevicesListsTheCpuAndWhatAutoPicks()
    {
        var (code, output, _) = Run("devices");
        Assert.That(code, Is.EqualTo(0));
        Assert.That(output, Does.Contain("cpu:0").And.Contain("auto picks"));
    }

    [TestCase(new[] { "--hidden", "0" }, "gpurnn: --hidden must be a positive integer")]
    [TestCase(new[] { "--lr", "-1" }, "gpurnn: --lr must be a positive finite number")]
    [TestCase(new[] { "--lr", "NaN" }, "gpurnn: --lr must be a positive finite number")]
    [TestCase(new[] { "--optimizer", "lbfgs" }, "gpurnn: --optimizer lbfgs: use sgd, adam, adagrad or rmsprop")]
    [TestCase(new[] { "--val-fraction", "1" }, "gpurnn: --val-fraction must be in [0, 1)")]
    [TestCase(new[] { "--device", "tpu" }, "gpurnn: --device tpu: unknown kind 'tpu'")]
    [TestCase(new[] { "--tokenizer", "bpe" }, "gpurnn: --tokenizer bpe: use char or word")]
    [TestCase(new[] { "--data", "no-such-file.txt" }, "gpurnn: no-such-file.txt: no such file")]
    [TestCase(new[] { "--hidden", "8", "--layers", "1", "--batch", "32", "--seq-len", "200000", "--val-fraction", "0" }, "gpurnn: B=32 T=200000 H=8")] // fits memory, not 32-bit indices / grid Y
    public void BadInputIsOneLineAndExitCodeOne(string[] args, string start)
    {
        var defaults = new Dictionary<string, string> { ["--device"] = "cpu", ["--data"] = data, ["--out"] = P("x.safetensors") };
        for (int i = 0; i < args.Length; i += 2)
            defaults[args[i]] = args[i + 1];
        var (code, _, error) = Run(["train", .. defaults.SelectMany(kv => new[] { kv.Key, kv.Value })]);
        Assert.That(code, Is.EqualTo(ExitCodes.Error), error);
        Assert.That(error, Does.StartWith(start));
        Assert.That(error.TrimEnd('\n').Split('\n'), Has.Length.EqualTo(1), "one line, no stack trace");
        Assert.That(File.Exists(P("x.safetensors")), Is.False);
    }

    [Test]
    public void TooManyStreamsForTheDataNamesTheMinimum()
    {
        var (code, _, error) = Run("train", "--device", "cpu", "--data", data, "--out", P("x.safetensors"), "--batch", "400");
        Assert.That(code, Is.EqualTo(ExitCodes.Error), error);
        Assert.That(error.TrimEnd('\n').Split('\n'), Has.Length.EqualTo(1), "one line, no stack trace");
        Assert.That(error, Does.Match($"^gpurnn: {System.Text.RegularExpressions.Regex.Escape(data)}: [0-9]+ training tokens.*--batch 400 needs at least [0-9]+"));
        Assert.That(File.Exists(P("x.safetensors")), Is.False);
    }

    [TestCase(new[] { "train", "--hiden", "3" }, "gpurnn: unknown flag --hiden; did you mean --hidden?")]
    [TestCase(new[] { "sample", "--checkpoint", "m.safetensors", "--temprature", "2" }, "gpurnn: unknown flag --temprature; did you mean --temperature?")]
    [TestCase(new[] { "info", "--chekpoint", "m.safetensors" }, "gpurnn: unknown flag --chekpoint; did you mean --checkpoint?")]
    [TestCase(new[] { "train", "--frobnicate", "3" }, "gpurnn: unknown flag --frobnicate")]
    [TestCase(new[] { "train", "--lr", "abc" }, "gpurnn: --lr abc: expected a number")]
    [TestCase(new[] { "train", "--steps", "1.5" }, "gpurnn: --steps 1.5: expected an integer")]
    public void UsageErrorsSpeakTheUsersLanguage(string[] args, string first)
    {
        var (code, _, error) = Run(args);
        Assert.That(code, Is.EqualTo(ExitCodes.Usage));
        Assert.That(error.Split('\n', StringSplitOptions.RemoveEmptyEntries), Is.EqualTo(new[] { first, "gpurnn: see 'gpurnn --help'" }));
    }

    [Test]
    public void UnknownFlagIsAUsageError()
    {
        var (code, _, error) = Run("train", "--hiden", "3");
        Assert.That(code, Is.EqualTo(ExitCodes.Usage));
        Assert.That(error, Does.Contain("--hiden"));
    }

    [Test]
    public void DivergenceStopsWithItsOwnExitCode()
    {
        var (code, _, error) = Train("--data", data, "--steps", "20", "--optimizer", "sgd", "--lr", "3e38", "--clip-norm", "0", "--val-fraction", "0", "--out", P("d.safetensors"));
        Assert.That(code, Is.EqualTo(ExitCodes.Diverged), error);
        Assert.That(error, Does.Match("^gpurnn: training diverged at step [0-9]+: the loss is"));
        Assert.That(File.Exists(P("d.safetensors")), Is.False, "no checkpoint of a diverged model is written");
    }
}
