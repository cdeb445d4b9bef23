using GpuRnn.Checkpoints;
using NUnit.Framework;

namespace GpuRnn.Tests;

/// <summary>Each sequence mode really learns (CPU accelerator, small seeded models, via the library API).</summary>
public sealed class ModeLearningTests
{
    private static GpuDevice Device => TestDevices.Get("cpu");

    /// <summary>
    /// Line mode on the dinosaur names: validation perplexity must fall well below the unigram
    /// baseline (the perplexity of the character frequencies), and sampled names end with &lt;eos&gt;.
    /// </summary>
    [Test]
    public void LinesLearnDinosaurNames()
    {
        string text = TextFile.Read(Path.Combine(TestData.RepoRoot(), "data", "dinos.txt"));
        var lines = SequenceData.Lines(text).Select(l => l.Text).ToList();
        var vocab = Vocabulary.FromText(string.Concat(lines));
        var seqs = lines.Select(l => SequenceData.EncodeLine(vocab, l, TokenizerKind.Char)).ToList();
        var train = seqs.Take(seqs.Count - 150).ToList();
        var val = seqs.Skip(seqs.Count - 150).ToList();
        int bos = vocab.IdOf(Vocabulary.Bos), eos = vocab.EndId;

        // Unigram baseline over what is predicted (every character and the final <eos>).
        var counts = new Dictionary<int, int>();
        foreach (var s in train)
            foreach (int id in s.Append(eos))
                counts[id] = counts.GetValueOrDefault(id) + 1;
        double total = counts.Values.Sum();
        long valTokens = val.Sum(s => s.Length + 1);
        double unigram = val.SelectMany(s => s.Append(eos)).Sum(id => -Math.Log(counts.GetValueOrDefault(id, 1) / total)) / valTokens;

        using var model = new RnnModel(Device, new ModelConfig(vocab.Count, 32, 1), seed: 1);
        using var trainer = new Trainer(model, new OptimizerSettings(OptimizerKind.Adam, 0.01f, ClipNorm: 5f));
        var data = new SequenceBatcher(train, null, 32, bos, eos, seed: 1);
        for (int i = 0; i < 200; i++)
            trainer.Step(data.Next(), readLoss: false);
        var (loss, tokens) = trainer.Inference.Evaluate(new SequenceBatcher(val, null, 32, bos, eos, seed: 1).InOrder());
        TestContext.Out.WriteLine($"unigram perplexity {Math.Exp(unigram):F2}, validation perplexity {Math.Exp(loss):F2} over {tokens} tokens");
        Assert.That(tokens, Is.EqualTo(valTokens));
        Assert.That(Math.Exp(loss), Is.LessThan(0.75 * Math.Exp(unigram)), "well below the unigram baseline");

        using var generator = new Generator(model);
        int ended = 0;
        for (int seed = 0; seed < 20; seed++)
        {
            var ids = generator.SampleIds([bos], 40, new SamplingOptions(Temperature: 0.8f, Seed: seed), eos, [bos, vocab.IdOf(Vocabulary.Pad)]);
            ended += ids.Count < 40 ? 1 : 0; // stopped by <eos>, not by the length limit
        }
        Assert.That(ended, Is.EqualTo(20), "every sampled name ends with <eos>");
    }

    /// <summary>
    /// Many-to-one on a task only a sequence model solves: does token A come before token B? Both
    /// appear exactly once at random places in a random sequence, so the bag of tokens says nothing.
    /// </summary>
    [Test]
    public void LabeledLearnsWhichTokenComesFirst()
    {
        var rng = new Random(5);
        const int a = 4, b = 5, filler = 6, fillers = 4;
        (int[] Seq, int Label) Example()
        {
            int n = rng.Next(4, 11);
            var seq = Enumerable.Range(0, n).Select(_ => filler + rng.Next(fillers)).ToArray();
            int i = rng.Next(n), j = rng.Next(n - 1);
            if (j >= i)
                j++;
            seq[i] = a;
            seq[j] = b;
            return (seq, i < j ? 1 : 0);
        }
        var train = Enumerable.Range(0, 2000).Select(_ => Example()).ToList();
        var val = Enumerable.Range(0, 400).Select(_ => Example()).ToList();
        int vocab = filler + fillers;
        using var model = new RnnModel(Device, new ModelConfig(vocab, 24, 1, Classes: 2), seed: 2);
        using var trainer = new Trainer(model, new OptimizerSettings(OptimizerKind.Adam, 0.01f, ClipNorm: 5f));
        var data = new SequenceBatcher(train.Select(e => e.Seq).ToList(), train.Select(e => e.Label).ToList(), 32, -1, -1, seed: 3);
        for (int i = 0; i < 250; i++)
            trainer.Step(data.Next(), readLoss: false);
        var metrics = ClassifierMetrics.Compute(trainer.Inference, new SequenceBatcher(val.Select(e => e.Seq).ToList(), val.Select(e => e.Label).ToList(), 64, -1, -1, 0), ["b-first", "a-first"]);
        TestContext.Out.WriteLine(metrics.Report());
        Assert.That(metrics.Count, Is.EqualTo(400));
        Assert.That(metrics.Accuracy, Is.GreaterThanOrEqualTo(0.95));
    }

    /// <summary>
    /// Encoder–decoder on reversing short strings (a seeded generator of our own): the decoder sees
    /// only the encoder's final states, so it must encode the whole string. Greedy decoding of unseen
    /// strings must reach ≥ 90% exact match.
    /// </summary>
    [Test]
    public void PairsLearnToReverseShortStrings()
    {
        var rng = new Random(11);
        const int letters = 5, first = 4; // ids 4..8; 0..3 are the special tokens
        int[] Word() => Enumerable.Range(0, rng.Next(2, 5)).Select(_ => first + rng.Next(letters)).ToArray();
        var train = Enumerable.Range(0, 3000).Select(_ => Word()).ToList();
        var val = Enumerable.Range(0, 200).Select(_ => Word()).ToList();
        using var model = new RnnModel(Device, new ModelConfig(first + letters, 48, 1, EncoderDecoder: true), seed: 3);
        using var trainer = new Trainer(model, new OptimizerSettings(OptimizerKind.Adam, 0.01f, ClipNorm: 5f));
        var data = SequenceBatcher.Pairs(train, train.Select(w => w.Reverse().ToArray()).ToList(), 32, bos: 2, eos: 3, seed: 4);
        for (int i = 0; i < 700; i++)
            trainer.Step(data.Next(), readLoss: false);

        var check = SequenceBatcher.Pairs(val, val.Select(w => w.Reverse().ToArray()).ToList(), 64, bos: 2, eos: 3, seed: 0);
        int exact = 0, index = 0;
        foreach (var window in check.InOrder())
        {
            int count = Math.Min(64, val.Count - index);
            var decoded = trainer.Inference.Decode(window.Source!, count, bos: 2, eos: 3, maxLength: 10, excluded: [0, 1, 2]);
            for (int i = 0; i < count; i++, index++)
                exact += decoded[i].SequenceEqual(val[index].Reverse()) ? 1 : 0;
        }
        TestContext.Out.WriteLine($"exact match {exact}/{val.Count}");
        Assert.That(exact, Is.GreaterThanOrEqualTo(0.9 * val.Count));
    }

    /// <summary>
    /// A word-sized vocabulary (V = 10,000): layer 0 is a gather and its gradient a scatter, so no
    /// [positions, V] one-hot matrix exists, and the softmax over V is fused with the loss. The
    /// untrained loss is ln V and a repeated window is memorised.
    /// </summary>
    [Test]
    public void TenThousandWordVocabularyTrains()
    {
        const int vocab = 10_000, batch = 4, steps = 8;
        var rng = new Random(1);
        var ids = Enumerable.Range(0, batch * (steps + 1)).Select(_ => rng.Next(vocab)).ToArray(); // one window per epoch
        using var model = new RnnModel(Device, new ModelConfig(vocab, 16, 1), seed: 1);
        using var trainer = new Trainer(model, new OptimizerSettings(OptimizerKind.Adam, 0.05f));
        var data = new StreamBatcher(ids, batch, steps);
        float first = trainer.Step(data.Next())!.Value;
        float last = first;
        for (int i = 0; i < 15; i++)
            last = trainer.Step(data.Next())!.Value;
        Assert.That(first, Is.EqualTo(Math.Log(vocab)).Within(0.05));
        Assert.That(last, Is.LessThan(first / 2), "the window is being memorised");
        // The input side holds W_ih [H, V] only: no buffer of the activations scales with P·V but the logits.
        Assert.That(TrainingMemory.Bytes(model.Config, batch, steps, 2, false), Is.EqualTo(trainer.DeviceBytes));
    }

    [Test]
    public void MetricsCountPrecisionRecallAndF1()
    {
        // A hand-checkable confusion matrix through the public report.
        using var model = new RnnModel(Device, new ModelConfig(3, 2, 1, Classes: 2), seed: 1);
        using var predictor = new Predictor(model);
        model.SetTensor("decoder.weight", new float[4]);
        model.SetTensor("decoder.bias", [0f, 1f]); // always predicts class 1
        var seqs = new List<int[]> { new[] { 1 }, new[] { 2 }, new[] { 0, 1 }, new[] { 2 } };
        var m = ClassifierMetrics.Compute(predictor, new SequenceBatcher(seqs, [0, 1, 1, 1], 3, -1, -1, 0), ["x", "y"]);
        Assert.That(m.Accuracy, Is.EqualTo(0.75));
        Assert.That(m.Precision(1), Is.EqualTo(0.75));
        Assert.That(m.Recall(1), Is.EqualTo(1.0));
        Assert.That(m.F1(1), Is.EqualTo(2 * 0.75 / 1.75).Within(1e-12));
        Assert.That(double.IsNaN(m.Precision(0)), Is.True, "nothing was predicted as x");
        Assert.That(m.F1(0), Is.Zero);
        Assert.That(m.Confusion, Is.EqualTo(new long[,] { { 0, 1 }, { 0, 3 } }));
    }
}
