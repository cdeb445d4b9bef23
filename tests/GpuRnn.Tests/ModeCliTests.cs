using System.Text.Json;
using GpuRnn.Checkpoints;
using NUnit.Framework;

namespace GpuRnn.Tests;

/// <summary>The line and labelled modes through the command line: train, sample, eval, predict, info.</summary>
public sealed class ModeCliTests : CliHarness
{
    private static readonly string[] Small = ["--device", "cpu", "--hidden", "8", "--layers", "1", "--batch", "4", "--length", "10", "--eval-every", "2"];

    private string Names()
    {
        string path = P("names.txt");
        File.WriteAllText(path, "ab\nabc\nbca\n\ncab\nb\nacab\nbb\nca\nabba\nc\n");
        return path;
    }

    private string Labelled()
    {
        string path = P("labelled.tsv");
        File.WriteAllText(path, "pos\tgood fun\nneg\tbad day\npos\tfun fun\nneg\tbad\r\npos\tgood\nneg\tsad bad day\npos\tgood good\nneg\tsad\n");
        return path;
    }

    [Test]
    public void LinesTrainSampleEvalAndPredict()
    {
        var (code, output, error) = Run(["train", .. Small, "--mode", "lines", "--data", Names(), "--steps", "4", "--val-fraction", "0.2", "--out", P("lines.safetensors")]);
        Assert.That(code, Is.EqualTo(0), error);
        Assert.That(output, Does.Contain("lines data").And.Contain("10 lines (8 train, 2 validation)"));
        var c = Checkpoint.Load(P("lines.safetensors"));
        Assert.That(c.Mode, Is.EqualTo(DataMode.Lines));
        Assert.That(c.Vocabulary.Tokens, Is.EqualTo(new[] { "<pad>", "<unk>", "<bos>", "<eos>", "a", "b", "c" }), "no newline token in a line model");

        var sample = Run("sample", "--checkpoint", P("lines.safetensors"), "--device", "cpu", "--count", "3", "--length", "12", "--seed", "5");
        Assert.That(sample.Code, Is.EqualTo(0), sample.Err);
        Assert.That(sample.Out.Split("---\n"), Has.Length.EqualTo(3));
        using (var model = c.CreateModel(TestDevices.Get("cpu")))
        using (var generator = new Generator(model))
        {
            // A line model starts from <bos> and stops at <eos>: the runner must sample it that way.
            string expected = generator.Sample(c.Vocabulary, c.Tokenizer, "", 12, new SamplingOptions(Seed: 5), DataMode.Lines);
            Assert.That(sample.Out.Split("---\n")[0], Is.EqualTo(expected + "\n"));
        }

        var eval = Run("eval", "--checkpoint", P("lines.safetensors"), "--data", Names(), "--device", "cpu", "--json");
        Assert.That(eval.Code, Is.EqualTo(0), eval.Err);
        Assert.That(JsonDocument.Parse(eval.Out).RootElement.GetProperty("tokens").GetInt64(), Is.EqualTo(25 + 10), "every character and each line's <eos>");

        File.WriteAllText(P("primes.txt"), "ab\nc\n");
        var predict = Run("predict", "--checkpoint", P("lines.safetensors"), "--input", P("primes.txt"), "--device", "cpu", "--length", "5");
        Assert.That(predict.Code, Is.EqualTo(0), predict.Err);
        Assert.That(predict.Out.TrimEnd('\n').Split('\n'), Has.Length.EqualTo(2), "one continuation per input line");
    }

    /// <summary>--bidirectional trains a classifier and an encoder–decoder (info lists the reverse tensors, resume works); the language-model modes refuse it in one line.</summary>
    [Test]
    public void BidirectionalTrainsWhereItMayAndIsRefusedElsewhere([Values("stream", "lines", "labeled", "pairs")] string mode)
    {
        string data = mode switch
        {
            "labeled" => Labelled(),
            "pairs" => Write("bipairs.tsv", "ab\tba\nabc\tcba\nbca\tacb\ncab\tbac\nb\tb\nacab\tbaca\n"),
            _ => Names(),
        };
        string model = P($"bi-{mode}.safetensors");
        var (code, output, error) = Run(["train", .. Small, "--cell", "gru", "--bidirectional", "--mode", mode, "--data", data, "--steps", "2", "--val-fraction", "0", "--seq-len", "4", "--out", model]);
        if (mode is "stream" or "lines")
        {
            Assert.That(code, Is.Not.EqualTo(0));
            Assert.That(error.Trim(), Does.Contain("--bidirectional needs --mode labeled or pairs").And.Not.Contain("\n"));
            return;
        }
        Assert.That(code, Is.EqualTo(0), error);
        Assert.That(Checkpoint.Load(model).Config.Bidirectional, Is.True);
        Assert.That(output, Does.Contain("gru L=1 H=").And.Contain(" bidirectional"), "the start line names the encoder's directions");
        var info = Run("info", "--checkpoint", model);
        Assert.That(info.Out, Does.Contain("weight_ih_l0_reverse [").And.Contain("bidirectional"));
        var resumed = Run("train", "--device", "cpu", "--resume", model, "--data", data, "--steps", "3", "--length", "0", "--out", P($"bi-{mode}-2.safetensors"));
        Assert.That(resumed.Code, Is.EqualTo(0), resumed.Err);
    }

    /// <summary>
    /// --cell in every mode: train, then the command that uses the model (sample, predict or eval) and
    /// info, which names the cell; a resume continues with the checkpoint's cell.
    /// </summary>
    [Test]
    public void EveryCellTrainsInEveryMode([Values("gru", "lstm")] string cell, [Values("stream", "lines", "labeled", "pairs")] string mode)
    {
        string data = mode switch
        {
            "labeled" => Labelled(),
            "pairs" => Write("pairs.tsv", "ab\tba\nabc\tcba\nbca\tacb\ncab\tbac\nb\tb\nacab\tbaca\n"),
            _ => Names(),
        };
        string model = P($"{cell}-{mode}.safetensors");
        var (code, _, error) = Run(["train", .. Small, "--cell", cell, "--mode", mode, "--data", data, "--steps", "2", "--val-fraction", "0", "--seq-len", "4", "--out", model]);
        Assert.That(code, Is.EqualTo(0), error);
        var c = Checkpoint.Load(model);
        Assert.That(Checkpoint.CellName(c.Config.Cell), Is.EqualTo(cell));
        var info = Run("info", "--checkpoint", model);
        Assert.That(info.Out, Does.Contain($"model:      {(cell == "gru" ? "GRU" : "LSTM")} "));
        var use = mode switch
        {
            "stream" => Run("sample", "--checkpoint", model, "--device", "cpu", "--length", "5"),
            "lines" => Run("sample", "--checkpoint", model, "--device", "cpu", "--count", "2", "--length", "5"),
            _ => Run("eval", "--checkpoint", model, "--data", data, "--device", "cpu", "--json"),
        };
        Assert.That(use.Code, Is.EqualTo(0), use.Err);
        var resumed = Run("train", "--device", "cpu", "--resume", model, "--data", data, "--steps", "3", "--length", "0", "--out", P($"{cell}-{mode}-2.safetensors"));
        Assert.That(resumed.Code, Is.EqualTo(0), resumed.Err);
        Assert.That(Checkpoint.Load(P($"{cell}-{mode}-2.safetensors")).Config.Cell, Is.EqualTo(c.Config.Cell));
    }

    private string Write(string name, string text)
    {
        File.WriteAllText(P(name), text);
        return P(name);
    }

    [TestCase("lines")]
    [TestCase("pairs")]
    public void SequenceModesResumeBitIdentically(string mode)
    {
        string data = mode == "lines" ? Names() : P("pairs.tsv");
        if (mode == "pairs")
            File.WriteAllText(data, "ab\tba\nabc\tcba\nca\tac\nbca\tacb\nb\tb\ncab\tbac\nbb\tbb\naab\tbaa\n");
        string[] common = [.. Small, "--mode", mode, "--data", data, "--val-fraction", "0"];
        Assert.That(Run(["train", .. common, "--steps", "7", "--out", P("straight.safetensors")]).Code, Is.EqualTo(0));
        Assert.That(Run(["train", .. common, "--steps", "4", "--out", P("first.safetensors")]).Code, Is.EqualTo(0));
        var resumed = Run("train", "--device", "cpu", "--resume", P("first.safetensors"), "--data", data, "--steps", "7", "--length", "0", "--out", P("resumed.safetensors"));
        Assert.That(resumed.Code, Is.EqualTo(0), resumed.Err);
        var a = Checkpoint.Load(P("straight.safetensors"));
        var b = Checkpoint.Load(P("resumed.safetensors"));
        foreach (var (name, w) in a.Weights)
            Assert.That(b.Weights[name], Is.EqualTo(w).AsCollection, $"{name} must be bit-identical");
        var again = Run("train", "--device", "cpu", "--resume", P("resumed.safetensors"), "--data", data, "--steps", "7");
        Assert.That(again.Code, Is.EqualTo(1));
        Assert.That(again.Err, Does.Contain("is at step 7, which already reaches the 7 steps asked for"));
    }

    [Test]
    public void LabeledTrainEvalAndPredict()
    {
        var (code, output, error) = Run(["train", .. Small, "--mode", "labeled", "--tokenizer", "word", "--data", Labelled(), "--steps", "6", "--val-fraction", "0.25",
            "--out", P("cls.safetensors"), "--json"]);
        Assert.That(code, Is.EqualTo(0), error);
        var summary = JsonDocument.Parse(output.Trim().Split('\n')[^1]).RootElement;
        Assert.That(summary.GetProperty("val_accuracy").GetDouble(), Is.InRange(0.0, 1.0));
        Assert.That(summary.GetProperty("sample").GetString(), Does.Contain("confusion"));
        var c = Checkpoint.Load(P("cls.safetensors"));
        Assert.That(c.Labels, Is.EqualTo(new[] { "neg", "pos" }));
        Assert.That(c.Config.Classes, Is.EqualTo(2));

        var info = Run("info", "--checkpoint", P("cls.safetensors"));
        Assert.That(info.Out, Does.Contain("\"labels\":[\"neg\",\"pos\"]"));

        var eval = Run("eval", "--checkpoint", P("cls.safetensors"), "--data", Labelled(), "--device", "cpu", "--json");
        Assert.That(eval.Code, Is.EqualTo(0), eval.Err);
        var metrics = JsonDocument.Parse(eval.Out).RootElement;
        Assert.That(metrics.GetProperty("count").GetInt64(), Is.EqualTo(8));
        Assert.That(metrics.GetProperty("per_class").GetProperty("pos").GetProperty("f1").ValueKind, Is.EqualTo(JsonValueKind.Number));

        File.WriteAllText(P("texts.txt"), "good fun\nsad day\nunseen words here\n");
        var predict = Run("predict", "--checkpoint", P("cls.safetensors"), "--input", P("texts.txt"), "--device", "cpu");
        Assert.That(predict.Code, Is.EqualTo(0), predict.Err);
        var rows = predict.Out.TrimEnd('\n').Split('\n');
        Assert.That(rows, Has.Length.EqualTo(3));
        foreach (string row in rows)
        {
            var parts = row.Split('\t');
            Assert.That(parts[0], Is.AnyOf("neg", "pos"));
            Assert.That(double.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture), Is.InRange(0.5, 1.0));
        }

        var sample = Run("sample", "--checkpoint", P("cls.safetensors"), "--device", "cpu");
        Assert.That(sample.Code, Is.EqualTo(1));
        Assert.That(sample.Err, Does.Contain("classifier"));
    }

    [Test]
    public void PairsTrainEvalAndPredict()
    {
        string path = P("pairs.tsv");
        File.WriteAllText(path, string.Join("\n", Enumerable.Range(0, 24).Select(i => { string w = "abc"[..(1 + i % 3)] + "cab"[(i % 2)..]; return $"{w}\t{new string(w.Reverse().ToArray())}"; })) + "\n");
        var (code, output, error) = Run(["train", .. Small, "--mode", "pairs", "--data", path, "--steps", "6", "--val-fraction", "0.25", "--out", P("s2s.safetensors"), "--json"]);
        Assert.That(code, Is.EqualTo(0), error);
        var summary = JsonDocument.Parse(output.Trim().Split('\n')[^1]).RootElement;
        Assert.That(summary.GetProperty("val_exact_match").GetDouble(), Is.InRange(0.0, 1.0));
        Assert.That(summary.GetProperty("sample").GetString(), Does.StartWith("exact match"));
        var c = Checkpoint.Load(P("s2s.safetensors"));
        Assert.That(c.Mode, Is.EqualTo(DataMode.Pairs));
        Assert.That(c.Config.EncoderDecoder, Is.True);
        Assert.That(c.Weights.Keys, Does.Contain("encoder.rnn.weight_ih_l0").And.Contain("decoder.rnn.weight_hh_l0").And.Contain("decoder.out.bias"));

        var eval = Run("eval", "--checkpoint", P("s2s.safetensors"), "--data", path, "--device", "cpu", "--json");
        Assert.That(eval.Code, Is.EqualTo(0), eval.Err);
        var m = JsonDocument.Parse(eval.Out).RootElement;
        Assert.That(m.GetProperty("pairs").GetInt64(), Is.EqualTo(24));
        Assert.That(m.GetProperty("token_accuracy").GetDouble(), Is.InRange(0.0, 1.0));

        File.WriteAllText(P("sources.txt"), "abc\nca\n");
        var predict = Run("predict", "--checkpoint", P("s2s.safetensors"), "--input", P("sources.txt"), "--device", "cpu", "--length", "6");
        Assert.That(predict.Code, Is.EqualTo(0), predict.Err);
        Assert.That(predict.Out.Split('\n'), Has.Length.EqualTo(3), "one decoded line per source");

        var sample = Run("sample", "--checkpoint", P("s2s.safetensors"), "--device", "cpu");
        Assert.That(sample.Code, Is.EqualTo(1));
        Assert.That(sample.Err, Does.Contain("encoder–decoder"));

        File.WriteAllText(P("bad.tsv"), "ab\tba\nabc cba\n");
        var bad = Run(["train", .. Small, "--mode", "pairs", "--data", P("bad.tsv"), "--steps", "1"]);
        Assert.That(bad.Code, Is.EqualTo(1));
        Assert.That(bad.Err, Does.Contain("bad.tsv:2: no TAB; paired data is source<TAB>target per line"));
    }

    /// <summary>--attention trains, is stored (info shows its tensors), predicts and draws its heat map; outside pairs mode it is a one-line error.</summary>
    [Test]
    public void AttentionTrainsIsShownAndPredicts([Values("dot", "general", "additive")] string attention)
    {
        string path = P("pairs.tsv");
        File.WriteAllText(path, "ab\tba\nabc\tcba\nbca\tacb\ncab\tbac\nb\tb\nacab\tbaca\n");
        var train = Run(["train", .. Small, "--mode", "pairs", "--attention", attention, "--data", path, "--steps", "3", "--val-fraction", "0.34", "--out", P("att.safetensors"), "--json"]);
        Assert.That(train.Code, Is.EqualTo(0), train.Err);
        Assert.That(Checkpoint.Load(P("att.safetensors")).Config.Attention, Is.EqualTo(AttentionNames.Parse(attention)));
        Assert.That(train.Out, Does.Contain($" attention={attention}"), "the start line names the attention");
        var info = Run("info", "--checkpoint", P("att.safetensors"));
        Assert.That(info.Code, Is.EqualTo(0), info.Err);
        Assert.That(info.Out, Does.Contain(attention == "additive"
            ? "attention:  Bahdanau additive: attention.query.weight [8, 8], attention.key.weight [8, 8], attention.score.weight [1, 8], attention.context.weight [8, 8]"
            : $"attention:  Luong {attention}: " + (attention == "general" ? "attention.weight [8, 8], " : "") + "attention.combine.weight [8, 16]"));
        Assert.That(info.Out, Does.Contain($"\"attention\":\"{attention}\""));
        File.WriteAllText(P("sources.txt"), "abc\nca\n");
        var predict = Run("predict", "--checkpoint", P("att.safetensors"), "--input", P("sources.txt"), "--device", "cpu", "--length", "6", "--attention-plot", P("plots/att.png"));
        Assert.That(predict.Code, Is.EqualTo(0), predict.Err);
        Assert.That(predict.Out.Split('\n'), Has.Length.EqualTo(3), "one decoded line per source");
        Assert.That(File.ReadAllBytes(P("plots/att.png"))[1..4], Is.EqualTo("PNG"u8.ToArray()), "a PNG heat map, its folder created");
        var beam = Run("predict", "--checkpoint", P("att.safetensors"), "--input", P("sources.txt"), "--device", "cpu", "--length", "6", "--beam", "3");
        Assert.That(beam.Code, Is.EqualTo(0), beam.Err);
        Assert.That(beam.Out.Split('\n'), Has.Length.EqualTo(3), "one line per source with --beam");
        var noBeam = Run("predict", "--checkpoint", P("att.safetensors"), "--input", P("sources.txt"), "--device", "cpu", "--beam", "0");
        Assert.That((noBeam.Code, noBeam.Err.Trim()), Is.EqualTo((1, "gpurnn: --beam must be a positive integer (got 0)")));

        var lines = Run(["train", .. Small, "--mode", "lines", "--attention", attention, "--data", Names(), "--steps", "1", "--out", P("x.safetensors")]);
        Assert.That(lines.Code, Is.EqualTo(1));
        Assert.That(lines.Err.TrimEnd('\n').Split('\n'), Has.Length.EqualTo(1));
        Assert.That(lines.Err, Does.Contain($"--attention {attention}: attention reads an encoder's outputs; it needs --mode pairs, not lines"));
    }

    [TestCase("pos good\nneg\tbad\n", "labelled.tsv:1: no TAB")]
    [TestCase("pos\tgood\npos\tfun\n", "labelled data needs at least 2 classes; found 1 ('pos')")]
    [TestCase("pos\tgood\n\tbad\n", "labelled.tsv:2: the label before the TAB is empty")]
    public void BadLabelledDataNamesTheLine(string content, string message)
    {
        File.WriteAllText(P("labelled.tsv"), content);
        var (code, _, error) = Run(["train", .. Small, "--mode", "labeled", "--data", P("labelled.tsv"), "--steps", "1"]);
        Assert.That(code, Is.EqualTo(1));
        Assert.That(error, Does.Contain(message));
        Assert.That(error.TrimEnd('\n').Split('\n'), Has.Length.EqualTo(1));
    }

    [Test]
    public void UnknownModeIsAnError()
    {
        var (code, _, error) = Run(["train", .. Small, "--mode", "pairs2", "--data", Names(), "--steps", "1"]);
        Assert.That(code, Is.EqualTo(1));
        Assert.That(error, Does.StartWith("gpurnn: --mode pairs2: use stream, lines, labeled or pairs"));
    }
}
