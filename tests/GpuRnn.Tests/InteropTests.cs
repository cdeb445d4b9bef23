using System.Buffers.Binary;
using System.Diagnostics;
using System.Text.Json;
using GpuRnn.Checkpoints;
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

    private (RnnModel Model, Vocabulary Vocab, string Path) Saved(GpuDevice device)
    {
        var vocab = Vocabulary.FromText("hello world");
        var model = new RnnModel(device, new ModelConfig(vocab.Count, 6, 2), seed: 12);
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
    /// PyTorch loads the checkpoint into nn.RNN + nn.Linear and computes the same logits as the
    /// engine (one-hot input, same sequence). Skipped where python3 with torch is missing.
    /// </summary>
    [Test]
    public void PyTorchComputesTheSameLogits()
    {
        string? python = new[] { "/usr/bin/python3", "python3" }.FirstOrDefault(p => Runs(p, "-c \"import torch\""));
        if (python is null)
            Assert.Ignore("python3 with torch is not installed (apt-get install python3-torch); the PyTorch interop test is skipped");
        var device = TestDevices.Get("cpu");
        var (model, vocab, path) = Saved(device);
        using var _ = model;
        int[] ids = vocab.Encode("hello wor");
        string script = Path.Combine(TestData.RepoRoot(), "tests", "GpuRnn.Tests", "Interop", "torch_logits.py");
        var psi = new ProcessStartInfo(python, $"\"{script}\" \"{path}\" {string.Join(' ', ids)}") { RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(psi)!;
        string stdout = process.StandardOutput.ReadToEnd();
        string stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.That(process.ExitCode, Is.EqualTo(0), stderr);
        var torchLogits = JsonSerializer.Deserialize<double[][]>(stdout)!;

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
