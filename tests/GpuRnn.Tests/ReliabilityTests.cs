using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using GpuRnn.Checkpoints;
using GpuRnn.Kernels;
using GpuRnn.Cli;
using NUnit.Framework;

namespace GpuRnn.Tests;

/// <summary>
/// Issue 6, bad input: every case answered by one line naming the culprit, a non-zero exit code and
/// no stack trace (CliTests holds the first few flag cases). Data files, flags, checkpoints, sampling.
/// </summary>
public sealed class ReliabilityTests : CliHarness
{
    // ------------------------------------------------------------------------------------ data

    [Test]
    public void DataFolderIsRefused() => AssertOneLineError(Train("--data", Dir, "--steps", "1"), Dir, "is a folder");

    [TestCase(new byte[0], "the file is empty")]
    [TestCase(new byte[] { 0xEF, 0xBB, 0xBF }, "the file is empty")]
    [TestCase(new byte[] { (byte)'a', (byte)'b', (byte)'c', 0xFF, (byte)'d' }, "invalid UTF-8 at byte offset 3")]
    [TestCase(new byte[] { (byte)'a', 0xE2, 0x82 }, "invalid UTF-8 at byte offset 1")]
    [TestCase(new byte[] { (byte)'a', (byte)'b', 0, (byte)'c' }, "binary file (NUL byte at offset 2)")]
    public void BadDataFileIsNamed(byte[] bytes, string why)
    {
        File.WriteAllBytes(P("bad.txt"), bytes);
        AssertOneLineError(Train("--data", P("bad.txt"), "--steps", "1", "--out", P("m.safetensors")), P("bad.txt"), why);
        Assert.That(File.Exists(P("m.safetensors")), Is.False);
    }

    [Test]
    public void DataShorterThanOneWindowSaysTheMinimum()
    {
        File.WriteAllText(P("short.txt"), "abcde");
        AssertOneLineError(Train("--data", P("short.txt"), "--val-fraction", "0", "--steps", "1"), P("short.txt"), "5 training tokens", "--batch 3 needs at least 6");
        File.WriteAllText(P("short.txt"), new string('x', 100));
        AssertOneLineError(Train("--data", P("short.txt"), "--val-fraction", "0.02", "--steps", "1"), "validation tail has 2 tokens", "needs at least 6");
    }

    [Test]
    public void CrlfAndByteOrderMarkAreHandled()
    {
        File.WriteAllBytes(P("crlf.txt"), [.. "\uFEFF"u8, .. Encoding.UTF8.GetBytes(Text.Replace("\n", "\r\n", StringComparison.Ordinal))]);
        var r = Train("--data", P("crlf.txt"), "--steps", "2", "--val-fraction", "0", "--out", P("crlf.safetensors"));
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Ok), r.Err);
        var tokens = Checkpoint.Load(P("crlf.safetensors")).Vocabulary.Tokens;
        Assert.That(tokens, Does.Not.Contain("\r").And.Not.Contain("\uFEFF"));
        Assert.That(tokens, Is.EqualTo(Vocabulary.FromText(Text).Tokens), "the same vocabulary as the LF file without a BOM");
    }

    // ------------------------------------------------------------------------------------ flags

    [TestCase("--layers", "0", "--layers must be a positive integer (got 0)")]
    [TestCase("--hidden", "-5", "--hidden must be a positive integer (got -5)")]
    [TestCase("--batch", "0", "--batch must be a positive integer (got 0)")]
    [TestCase("--seq-len", "-1", "--seq-len must be a positive integer (got -1)")]
    [TestCase("--epochs", "0", "--epochs must be a positive integer (got 0)")]
    [TestCase("--steps", "-3", "--steps must be 0 (use --epochs) or positive (got -3)")]
    [TestCase("--lr", "0", "--lr must be a positive finite number (got 0)")]
    [TestCase("--lr", "Infinity", "--lr must be a positive finite number")]
    [TestCase("--momentum", "1", "--momentum must be in [0, 1)")]
    [TestCase("--clip-norm", "-1", "--clip-norm must be 0 (off) or a positive finite number")]
    [TestCase("--clip-value", "NaN", "--clip-value must be 0 (off) or a positive finite number")]
    [TestCase("--val-fraction", "-0.1", "--val-fraction must be in [0, 1) (got -0.1)")]
    [TestCase("--val-fraction", "1.5", "--val-fraction must be in [0, 1) (got 1.5)")]
    [TestCase("--eval-every", "-1", "--eval-every must be 0 or positive")]
    [TestCase("--checkpoint-every", "-2", "--checkpoint-every must be 0 or positive")]
    [TestCase("--length", "-1", "--length must be 0 or positive")]
    [TestCase("--device", "cpu:99", "--device cpu:99: no such device; present: ")]
    [TestCase("--device", "cuda:x", "--device cuda:x: the index after ':' must be a non-negative integer")]
    public void BadFlagIsNamed(string flag, string value, string message)
    {
        var r = Train([.. (flag == "--epochs" ? [] : new[] { "--steps", "1" }), "--data", Data, flag, value, "--out", P("m.safetensors")]);
        AssertOneLineError(r, message);
        Assert.That(File.Exists(P("m.safetensors")), Is.False);
    }

    [Test]
    public void ExclusiveFlagsAreRefused()
    {
        AssertOneLineError(Train("--data", Data, "--steps", "2", "--epochs", "2"), "--steps and --epochs exclude each other");
        AssertOneLineError(Train("--data", Data, "--init", P("a.safetensors"), "--resume", P("a.safetensors")), "--init and --resume exclude each other");
    }

    /// <summary>Sizes whose buffers cannot fit are refused before anything is allocated, with both numbers.</summary>
    [TestCase("--hidden", "300000")]
    [TestCase("--seq-len", "2000000000")]
    public void SizesThatDoNotFitAreRefusedBeforeAllocating(string flag, string value)
    {
        long before = GC.GetTotalAllocatedBytes();
        var r = Train("--data", Data, "--steps", "1", "--val-fraction", "0", flag, value, "--out", P("m.safetensors"));
        AssertOneLineError(r, "training needs", "of buffers but cpu:0 has", "of host memory available", "lower --hidden");
        Assert.That(r.Err, Does.Match("needs [0-9.]+ [KMGT]iB .* has [0-9.]+ [KMGT]iB"));
        Assert.That(GC.GetTotalAllocatedBytes() - before, Is.LessThan(64L << 20), "nothing large was allocated");
    }

    [Test]
    public void MemoryEstimateCountsEveryBuffer([Values(0, 3)] int classes, [Values(false, true)] bool validation, [Values] CellKind cell)
    {
        // The estimate must equal what a trainer really holds once it has run (and evaluated) a window.
        var config = new ModelConfig(10, 4, 2, classes, Cell: cell);
        using var model = new RnnModel(TestDevices.Get("cpu"), config, seed: 1);
        using var trainer = new Trainer(model, new OptimizerSettings(OptimizerKind.Adam, 0.01f));
        var window = new TokenWindow(2, 3) { Steps = 3 };
        Array.Fill(window.Inputs, 5);
        Array.Fill(window.Targets, classes > 0 ? -1 : 6);
        Array.Fill(window.Lengths, 3);
        Array.Fill(window.Labels, classes > 0 ? 1 : -1);
        trainer.ComputeGradients(window);
        if (validation)
            trainer.Inference.Evaluate([window]);
        Assert.That(TrainingMemory.Bytes(config, 2, 3, optimizerSlots: 2, validation), Is.EqualTo(trainer.DeviceBytes));
    }

    [Test]
    public void MemoryEstimateCountsAnEncoderDecoder([Values] CellKind cell)
    {
        var config = new ModelConfig(10, 4, 2, EncoderDecoder: true, Cell: cell);
        using var model = new RnnModel(TestDevices.Get("cpu"), config, seed: 1);
        using var trainer = new Trainer(model, new OptimizerSettings(OptimizerKind.Adam, 0.01f));
        var data = SequenceBatcher.Pairs([[4, 5, 6, 7, 8], [5]], [[6, 7], [8, 9, 4]], 2, bos: 2, eos: 3, seed: 1);
        trainer.ComputeGradients(data.Next());
        Assert.That(TrainingMemory.Bytes(config, 2, data.Capacity, optimizerSlots: 2, validation: false, sourceLen: data.SourceCapacity), Is.EqualTo(trainer.DeviceBytes));
    }

    // ------------------------------------------------------------------------------------ checkpoints

    private string Trained()
    {
        string path = P("good.safetensors");
        if (!File.Exists(path))
            Assert.That(Train("--data", Data, "--steps", "2", "--val-fraction", "0", "--out", path).Code, Is.EqualTo(ExitCodes.Ok));
        return path;
    }

    /// <summary>Every command that reads a checkpoint answers a bad one with one line naming the file.</summary>
    private void EveryReaderRefuses(string path, params string[] fragments)
    {
        AssertOneLineError(Run("info", "--checkpoint", path), [path, .. fragments]);
        AssertOneLineError(Run("sample", "--checkpoint", path, "--device", "cpu", "--length", "5"), [path, .. fragments]);
        AssertOneLineError(Run("eval", "--checkpoint", path, "--data", Data, "--device", "cpu"), [path, .. fragments]);
        AssertOneLineError(Run("train", "--device", "cpu", "--resume", path, "--data", Data, "--steps", "3", "--out", P("r.safetensors")), [path, .. fragments]);
        AssertOneLineError(Run("train", "--device", "cpu", "--init", path, "--data", Data, "--steps", "3", "--out", P("r.safetensors")), [path, .. fragments]);
    }

    [Test]
    public void MissingCheckpoint() => EveryReaderRefuses(P("nope.safetensors"));

    [Test]
    public void TruncatedCheckpoint()
    {
        var bytes = File.ReadAllBytes(Trained());
        var rng = new Random(6);
        foreach (int length in new[] { 0, 5, 8, 100, bytes.Length / 2, bytes.Length - 1 }.Concat(Enumerable.Range(0, 4).Select(_ => rng.Next(bytes.Length))))
        {
            File.WriteAllBytes(P("cut.safetensors"), bytes[..length]);
            AssertOneLineError(Run("info", "--checkpoint", P("cut.safetensors")), P("cut.safetensors"));
        }
        EveryReaderRefuses(P("cut.safetensors"));
    }

    [Test]
    public void HeaderLengthLargerThanTheFile()
    {
        var bytes = File.ReadAllBytes(Trained());
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)bytes.Length);
        File.WriteAllBytes(P("long.safetensors"), bytes);
        EveryReaderRefuses(P("long.safetensors"));
    }

    /// <summary>The header of the trained checkpoint, edited as text and written back with a fresh length.</summary>
    private string EditHeader(string name, Func<string, string> edit)
    {
        var bytes = File.ReadAllBytes(Trained());
        int length = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        string header = Encoding.UTF8.GetString(bytes, 8, length);
        string edited = edit(header);
        Assert.That(edited, Is.Not.EqualTo(header), "the edit applies");
        var head = Encoding.UTF8.GetBytes(edited);
        var file = new byte[8 + head.Length + bytes.Length - 8 - length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)head.Length);
        head.CopyTo(file, 8);
        bytes.AsSpan(8 + length).CopyTo(file.AsSpan(8 + head.Length));
        File.WriteAllBytes(P(name), file);
        return P(name);
    }

    [Test]
    public void MalformedJson() => EveryReaderRefuses(EditHeader("json.safetensors", h => h.Replace("\"dtype\":", "\"dtype\"", StringComparison.Ordinal)));

    [Test]
    public void UnknownDtype() => EveryReaderRefuses(EditHeader("dtype.safetensors", h => h.Replace("\"F32\"", "\"F17\"", StringComparison.Ordinal)), "F17");

    [Test]
    public void ShapeThatDisagreesWithItsOffsets()
    {
        string path = EditHeader("shape.safetensors", h =>
        {
            int at = h.IndexOf("\"decoder.bias\"", StringComparison.Ordinal);
            int shape = h.IndexOf("\"shape\":[", at, StringComparison.Ordinal) + "\"shape\":[".Length;
            return h[..shape] + "1," + h[shape..];
        });
        EveryReaderRefuses(path, "decoder.bias");
    }

    [Test]
    public void OffsetsOutOfRange() => EveryReaderRefuses(EditHeader("range.safetensors", h => ShiftLastOffset(h, 4)));

    /// <summary>Moves the end of the last tensor's data_offsets by <paramref name="delta"/> bytes.</summary>
    private static string ShiftLastOffset(string header, int delta)
    {
        var last = System.Text.RegularExpressions.Regex.Matches(header, "\"data_offsets\":\\[([0-9]+),([0-9]+)\\]")[^1];
        long end = long.Parse(last.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture) + delta;
        return header[..last.Groups[2].Index] + end.ToString(System.Globalization.CultureInfo.InvariantCulture) + header[(last.Groups[2].Index + last.Groups[2].Length)..];
    }

    [Test]
    public void ShapesThatDisagreeWithEachOther()
    {
        var c = Checkpoint.Load(Trained());
        var tensors = c.Weights.Select(kv => new TensorEntry(kv.Key, kv.Key == "rnn.weight_hh_l0" ? [4, 16] : Shape(c, kv.Key), kv.Value)).ToList();
        new SafeTensorsFile(tensors, new Dictionary<string, string> { [Checkpoint.VocabKey] = c.Metadata[Checkpoint.VocabKey] }).Write(P("mixed.safetensors"));
        EveryReaderRefuses(P("mixed.safetensors"), "has shape", "needs");
    }

    private static int[] Shape(Checkpoint c, string name) => new ParameterLayout(c.Config.Vocab, c.Config.Hidden, c.Config.Layers)[name].Shape;

    [Test]
    public void VocabularyLengthThatDisagreesWithV()
    {
        var c = Checkpoint.Load(Trained());
        var tensors = c.Weights.Select(kv => new TensorEntry(kv.Key, Shape(c, kv.Key), kv.Value)).ToList();
        var tokens = c.Vocabulary.Tokens.Take(c.Config.Vocab - 1).ToArray();
        new SafeTensorsFile(tensors, new Dictionary<string, string> { [Checkpoint.VocabKey] = JsonSerializer.Serialize(tokens) }).Write(P("vocab.safetensors"));
        EveryReaderRefuses(P("vocab.safetensors"), $"the vocabulary has {tokens.Length} tokens but ", $" says V = {c.Config.Vocab}");
    }

    [Test]
    public void ResumeFromARunOfAnotherSizeIsRefused()
    {
        string good = Trained();
        AssertOneLineError(Run("train", "--device", "cpu", "--resume", good, "--data", Data, "--batch", "4", "--steps", "3"), "--batch 4 conflicts with", good, "which has 3");
        AssertOneLineError(Run("train", "--device", "cpu", "--resume", good, "--data", Data, "--layers", "2", "--steps", "3"), "--layers 2 conflicts with", good, "which has 1");
        AssertOneLineError(Run("train", "--device", "cpu", "--init", good, "--data", Data, "--hidden", "9", "--steps", "3"), "--hidden 9 conflicts with", good, "which has 8");
    }

    [Test]
    public void ResumeFromWeightsOnlyIsRefused()
    {
        var c = Checkpoint.Load(Trained());
        new SafeTensorsFile(c.Weights.Select(kv => new TensorEntry(kv.Key, Shape(c, kv.Key), kv.Value)).ToList(),
            new Dictionary<string, string> { [Checkpoint.VocabKey] = c.Metadata[Checkpoint.VocabKey] }).Write(P("weights.safetensors"));
        AssertOneLineError(Run("train", "--device", "cpu", "--resume", P("weights.safetensors"), "--data", Data, "--steps", "3"), "holds no resume state", "use --init");
    }

    // ------------------------------------------------------------------------------------ sampling

    [Test]
    public void PrimeOutsideTheVocabularyBecomesUnknown()
    {
        var r = Run("sample", "--checkpoint", Trained(), "--device", "cpu", "--prime", "Zebra ☃", "--length", "10");
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Ok), r.Err);
        Assert.That(r.Out, Does.StartWith("Zebra ☃"));
    }

    [Test]
    public void PrimeOutsideAVocabularyWithoutUnknownIsOneLine()
    {
        var c = Checkpoint.Load(Trained());
        string[] tokens = [.. c.Vocabulary.Tokens.Select((t, i) => i < 4 ? $"special{i}" : t)]; // no <unk>
        new SafeTensorsFile(c.Weights.Select(kv => new TensorEntry(kv.Key, Shape(c, kv.Key), kv.Value)).ToList(),
            new Dictionary<string, string> { [Checkpoint.VocabKey] = JsonSerializer.Serialize(tokens) }).Write(P("nounk.safetensors"));
        AssertOneLineError(Run("sample", "--checkpoint", P("nounk.safetensors"), "--device", "cpu", "--prime", "First☃", "--length", "5"),
            "--prime: character U+2603 is not in the vocabulary", "has no <unk>", P("nounk.safetensors"));
        Assert.That(Run("sample", "--checkpoint", P("nounk.safetensors"), "--device", "cpu", "--prime", "First", "--length", "5").Code, Is.EqualTo(ExitCodes.Ok));
    }

    [Test]
    public void TemperatureAtOrBelowZeroIsGreedy()
    {
        string[] common = ["sample", "--checkpoint", Trained(), "--device", "cpu", "--prime", "First", "--length", "20"];
        var zero = Run([.. common, "--temperature", "0", "--seed", "1"]);
        Assert.That(zero.Code, Is.EqualTo(ExitCodes.Ok), zero.Err);
        Assert.That(Run([.. common, "--temperature", "0", "--seed", "2"]).Out, Is.EqualTo(zero.Out), "greedy ignores the seed");
        Assert.That(Run([.. common, "--temperature", "-1", "--seed", "3"]).Out, Is.EqualTo(zero.Out), "negative is greedy too");
        AssertOneLineError(Run([.. common, "--temperature", "NaN"]), "--temperature must be a finite number");
    }

    [Test]
    public void TopKLargerThanTheVocabularyMeansAll()
    {
        string[] common = ["sample", "--checkpoint", Trained(), "--device", "cpu", "--prime", "First", "--length", "20", "--seed", "5"];
        var all = Run([.. common, "--top-k", "0"]);
        var huge = Run([.. common, "--top-k", "100000"]);
        Assert.That(huge.Code, Is.EqualTo(ExitCodes.Ok), huge.Err);
        Assert.That(huge.Out, Is.EqualTo(all.Out));
        AssertOneLineError(Run([.. common, "--top-k", "-1"]), "--top-k must be 0 (off) or positive");
        AssertOneLineError(Run([.. common, "--top-p", "0"]), "--top-p must be in (0, 1]");
    }
}
