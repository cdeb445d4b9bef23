using System.Buffers.Binary;
using System.Diagnostics;
using System.Text.Json;
using GpuRnn.Checkpoints;
using GpuRnn.Kernels;
using NUnit.Framework;

namespace GpuRnn.Tests;

/// <summary>Checkpoints as other tools see them: an independent reader, and PyTorch itself when present.</summary>
public sealed class InteropTests
{
    private string dir = null!;

    [SetUp]
    public void MakeFolder() => Directory.CreateDirectory(dir = Path.Combine(Path.GetTempPath(), "gpurnn-interop-" + Guid.NewGuid().ToString("N")));

    [TearDown]
    public void RemoveFolder() => Directory.Delete(dir, recursive: true);

    private (RnnModel Model, Vocabulary Vocab, string Path) Saved(GpuDevice device, CellKind cell = CellKind.Elman)
    {
        var vocab = Vocabulary.FromText("hello world");
        var model = new RnnModel(device, new ModelConfig(vocab.Count, 6, 2, Cell: cell), seed: 12);
        string path = Path.Combine(dir, "m.safetensors");
        Checkpoint.Save(path, model, vocab, TokenizerKind.Char);
        return (model, vocab, path);
    }

    /// <summary>Reads the file with a reader written here from the format description alone: every tensor's bytes are the weights.</summary>
    [Test]
    public void IndependentReaderSeesPyTorchNamesShapesAndWeights()
    {
        var device = TestDevices.Get("cpu");
        var (model, vocab, path) = Saved(device);
        using var _ = model;
        byte[] raw = File.ReadAllBytes(path);
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(raw);
        using var header = JsonDocument.Parse(raw.AsMemory(8, (int)n));
        int data = 8 + (int)n;
        var names = new List<string>();
        foreach (var entry in header.RootElement.EnumerateObject())
        {
            if (entry.Name == "__metadata__")
            {
                var meta = entry.Value;
                Assert.That(JsonSerializer.Deserialize<string[]>(meta.GetProperty("gpurnn.vocab").GetString()!), Is.EqualTo(vocab.Tokens));
                Assert.That(meta.GetProperty("gpurnn.tokenizer").GetString(), Is.EqualTo("char"));
                continue;
            }
            names.Add(entry.Name);
            Assert.That(entry.Value.GetProperty("dtype").GetString(), Is.EqualTo("F32"));
            var shape = entry.Value.GetProperty("shape").EnumerateArray().Select(x => x.GetInt32()).ToArray();
            Assert.That(shape, Is.EqualTo(model.Layout[entry.Name].Shape), entry.Name);
            var offsets = entry.Value.GetProperty("data_offsets").EnumerateArray().Select(x => x.GetInt32()).ToArray();
            var values = new float[(offsets[1] - offsets[0]) / 4];
            for (int i = 0; i < values.Length; i++)
                values[i] = BinaryPrimitives.ReadSingleLittleEndian(raw.AsSpan(data + offsets[0] + 4 * i));
            Assert.That(values, Is.EqualTo(model.GetTensor(entry.Name)).AsCollection, entry.Name);
        }
        Assert.That(names, Is.EquivalentTo(model.Layout.Tensors.Select(t => t.Name)));
    }

    /// <summary>
    /// PyTorch loads the checkpoint into nn.RNN, nn.GRU or nn.LSTM + nn.Linear and computes the same
    /// logits as the engine (one-hot input, same sequence). Skipped where python3 with torch is missing.
    /// </summary>
    [Test]
    public void PyTorchComputesTheSameLogits([Values] CellKind cell)
    {
        string python = Python();
        var device = TestDevices.Get("cpu");
        var (model, vocab, path) = Saved(device, cell);
        using var _ = model;
        int[] ids = vocab.Encode("hello wor");
        string script = Path.Combine(TestData.RepoRoot(), "tests", "GpuRnn.Tests", "Interop", "torch_logits.py");
        var torchLogits = JsonSerializer.Deserialize<double[][]>(RunPython(python, $"\"{script}\" \"{path}\" {string.Join(' ', ids)}"))!;

        using var predictor = new Predictor(model);
        var window = new TokenWindow(1, ids.Length) { Steps = ids.Length, ResetState = true };
        ids.CopyTo(window.Inputs, 0);
        Array.Fill(window.Targets, -1);
        var ours = predictor.Logits(window); // [T, V]
        Assert.That(torchLogits, Has.Length.EqualTo(ids.Length));
        for (int t = 0; t < ids.Length; t++)
            for (int v = 0; v < vocab.Count; v++)
                Assert.That(ours[t * vocab.Count + v], Is.EqualTo(torchLogits[t][v]).Within(1e-5), $"step {t}, token {v}");
    }

    /// <summary>
    /// Thirty Adam steps with clip_grad_norm_ from the same initial weights reach the weights PyTorch's
    /// nn.RNN / nn.GRU / nn.LSTM + nn.Linear reach (one-hot input, mean cross-entropy, stream batching of
    /// DESIGN.md §6), within float32 rounding. Skipped where python3 with torch is missing.
    /// </summary>
    [Test]
    public void PyTorchTrainsToTheSameWeights([Values] CellKind cell)
    {
        string python = Python();
        const int batch = 4, seqLen = 8, steps = 30;
        const float lr = 0.01f, clipNorm = 1f;
        string text = DefaultCorpus.Text[..600];
        var vocab = Vocabulary.FromText(text);
        var ids = vocab.Encode(text);
        using var model = new RnnModel(TestDevices.Get("cpu"), new ModelConfig(vocab.Count, 8, 2, Cell: cell), seed: 21);
        string init = Path.Combine(dir, "init.safetensors"), trained = Path.Combine(dir, "trained.safetensors"), idsFile = Path.Combine(dir, "ids.json");
        Checkpoint.Save(init, model, vocab, TokenizerKind.Char);
        File.WriteAllText(idsFile, JsonSerializer.Serialize(ids));
        using (var trainer = new Trainer(model, new OptimizerSettings(OptimizerKind.Adam, lr, ClipNorm: clipNorm)))
        {
            var data = new StreamBatcher(ids, batch, seqLen);
            for (int i = 0; i < steps; i++)
                trainer.Step(data.Next(), readLoss: false);
        }
        Checkpoint.Save(trained, model, vocab, TokenizerKind.Char);
        string script = Path.Combine(TestData.RepoRoot(), "tests", "GpuRnn.Tests", "Interop", "torch_train.py");
        var run = RunPython(python, $"\"{script}\" \"{init}\" \"{trained}\" \"{idsFile}\" --batch {batch} --seq-len {seqLen} --steps {steps} --optimizer adam --lr {lr} --clip-norm {clipNorm}");
        double diff = JsonDocument.Parse(run).RootElement.GetProperty("maxAbsDiff").GetDouble();
        TestContext.Out.WriteLine($"{cell}: largest weight difference to PyTorch after {steps} Adam steps: {diff:E2}");
        // Thirty steps of float32 updates of size ≤ lr, each from gradients that agree to ~1e-6 relative.
        Assert.That(diff, Is.LessThanOrEqualTo(1e-4));
    }

    /// <summary>python3 with torch, or the test is ignored.</summary>
    private static string Python() =>
        new[] { "/usr/bin/python3", "python3" }.FirstOrDefault(p => Runs(p, "-c \"import torch\""))
        ?? throw new IgnoreException("python3 with torch is not installed (apt-get install python3-torch); the PyTorch interop test is skipped");

    /// <summary>Runs a Python script to completion and returns its standard output; a failure fails the test with its standard error.</summary>
    private static string RunPython(string python, string arguments)
    {
        var psi = new ProcessStartInfo(python, arguments) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(psi)!;
        string stdout = process.StandardOutput.ReadToEnd();
        string stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.That(process.ExitCode, Is.EqualTo(0), stderr);
        return stdout;
    }

    /// <summary>A checkpoint holds plain F32 tensors: saved on one kernel configuration, it gives the same model on another.</summary>
    [Test]
    public void CheckpointMovesBetweenAccelerators()
    {
        var (model, vocab, path) = Saved(TestDevices.Get("cpu"));
        using var _ = model;
        var loaded = Checkpoint.Load(path);
        using var other = loaded.CreateModel(TestDevices.Get(TestDevices.CpuTiled)); // shared-memory tiles: the GPU code path
        int[] ids = vocab.Encode("hello world hello");
        foreach (var t in model.Layout.Tensors)
            Assert.That(other.GetTensor(t.Name), Is.EqualTo(model.GetTensor(t.Name)).AsCollection, t.Name);
        using var a = new Predictor(model);
        using var b = new Predictor(other);
        var (lossA, countA) = a.Evaluate(ids, 1, 8);
        var (lossB, countB) = b.Evaluate(ids, 1, 8);
        Assert.That(countB, Is.EqualTo(countA));
        Assert.That(lossB, Is.EqualTo(lossA).Within(1e-6 * lossA), "every tiling sums in the same order");
    }

    private static bool Runs(string file, string args)
    {
        try
        {
            using var p = Process.Start(new ProcessStartInfo(file, args) { RedirectStandardError = true, RedirectStandardOutput = true })!;
            p.WaitForExit(30_000);
            return p.HasExited && p.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return false;
        }
    }
}
