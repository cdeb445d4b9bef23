using GpuRnn.Checkpoints;
using GpuRnn.Kernels;
using GpuRnn.Tests.Reference;
using NUnit.Framework;

namespace GpuRnn.Tests;

/// <summary>
/// Bidirectional stacks (PyTorch's bidirectional=True on packed sequences, DESIGN.md §3d): a classifier and an
/// encoder–decoder's encoder on padded batches whose lengths differ widely (1 and 9 in one batch), every cell, one
/// and two layers, both recurrence paths, against the unpadded double-precision reference, sequence by sequence.
/// </summary>
[TestFixtureSource(typeof(TestDevices), nameof(TestDevices.Specs))]
public sealed class BidirectionalTests(string spec) : DeviceFixture(spec)
{
    // Gradients are held to DeviceFixture.AssertGradients's bound (SequenceModeTests' whole-step float32-vs-double bound):
    // the reverse direction adds no longer sums (the same recurrence over the same lengths) and the join of the two
    // directions only copies, so the bound carries over unchanged.

    /// <summary>Lengths 3, 1, 9, 2, 4: a length-1 sequence beside one nine times longer.</summary>
    private static int[][] Sequences(int vocab, int seed) => SequenceModeTests.Sequences(vocab, seed);

    private static IEnumerable<TestCaseData> Cases() =>
        from cell in new[] { CellKind.Elman, CellKind.Gru, CellKind.Lstm }
        from layers in new[] { 1, 2 }
        from recurrence in new[] { Recurrence.PerStep, Recurrence.Fused }
        select new TestCaseData(cell, layers, recurrence);

    [TestCaseSource(nameof(Cases))]
    public void ClassifierMatchesTheReference(CellKind cell, int layers, Recurrence recurrence)
    {
        const int vocab = 8, hidden = 5, classes = 3;
        var seqs = Sequences(vocab, 40 + layers);
        int[] labels = seqs.Select((_, i) => i % classes).ToArray();
        using var model = new RnnModel(Device, new ModelConfig(vocab, hidden, layers, classes, Cell: cell, Bidirectional: true), seed: 8) { Recurrence = recurrence };
        Assert.That(model.Layout["decoder.weight"].Shape, Is.EqualTo(new[] { classes, 2 * hidden }), "the head reads [forward; reverse]");
        using var trainer = new Trainer(model, new OptimizerSettings(OptimizerKind.Sgd, 0.1f));
        var batcher = new SequenceBatcher(seqs, labels, seqs.Length + 2, bos: -1, eos: -1, seed: 1); // 2 empty slots
        trainer.ComputeGradients(batcher.Next());

        var p = WeightsInDouble(model);
        var grads = p.ToDictionary(kv => kv.Key, kv => new double[kv.Value.Length]);
        double loss = 0;
        for (int i = 0; i < seqs.Length; i++)
        {
            var r = RefClassifier.ForwardBackward(p, vocab, hidden, layers, classes, seqs[i], labels[i], cell, bidirectional: true);
            loss += r.Loss / seqs.Length;
            foreach (var (name, g) in r.Grads)
                for (int j = 0; j < g.Length; j++)
                    grads[name][j] += g[j] / seqs.Length;
        }
        Assert.That(trainer.ReadLoss(), Is.EqualTo(loss).Within(1e-5 * loss));
        double worst = AssertGradients(trainer, model, grads, everyTensorLearns: true);
        TestContext.Out.WriteLine($"{Spec} {cell} L={layers} {RecurrenceNames.Name(recurrence)}: largest gradient error {worst:E2} of the tensor's largest");

        var logits = trainer.Inference.ClassLogits(batcher.InOrder().First());
        var expected = RefClassifier.ForwardBackward(p, vocab, hidden, layers, classes, seqs[0], labels[0], cell, bidirectional: true).Logits;
        AssertClose(logits[..classes], expected, _ => 1e-5 + TestDevices.TanhTolerance(Device), "class logits of the first sequence");
    }

    [TestCaseSource(nameof(Cases))]
    public void EncoderDecoderMatchesTheReference(CellKind cell, int layers, Recurrence recurrence)
    {
        const int vocab = 8, hidden = 5;
        var sources = Sequences(vocab, 50 + layers);
        var targets = Sequences(vocab, 60 + layers).Reverse().ToArray();
        using var model = new RnnModel(Device, new ModelConfig(vocab, hidden, layers, EncoderDecoder: true, Cell: cell, Bidirectional: true), seed: 9) { Recurrence = recurrence };
        if (layers > 1)
            Assert.That(model.Layout["encoder.rnn.weight_ih_l1_reverse"].Shape[1], Is.EqualTo(2 * hidden), "layer 1 of the encoder reads both directions");
        Assert.That(model.Layout["decoder.rnn.weight_hh_l0"].Shape, Is.EqualTo(new[] { CellShapes.Gates(cell) * hidden, hidden }), "the decoder stays forward with H");
        using var trainer = new Trainer(model, new OptimizerSettings(OptimizerKind.Sgd, 0.1f));
        var batcher = SequenceBatcher.Pairs(sources, targets, sources.Length + 1, bos: 2, eos: 3, seed: 1);
        trainer.ComputeGradients(batcher.Next());

        var p = WeightsInDouble(model);
        var grads = p.ToDictionary(kv => kv.Key, kv => new double[kv.Value.Length]);
        double loss = 0;
        int tokens = 0;
        for (int i = 0; i < sources.Length; i++)
        {
            var r = RefSeq2Seq.ForwardBackward(p, vocab, hidden, layers, sources[i], targets[i], 2, 3, cell, bidirectional: true);
            loss += r.Loss * r.Count;
            tokens += r.Count;
            foreach (var (name, g) in r.Grads)
                for (int j = 0; j < g.Length; j++)
                    grads[name][j] += g[j] * r.Count;
        }
        foreach (var g in grads.Values)
            for (int j = 0; j < g.Length; j++)
                g[j] /= tokens;
        Assert.That(trainer.ReadLoss(), Is.EqualTo(loss / tokens).Within(1e-5 * loss / tokens));
        double worst = AssertGradients(trainer, model, grads, everyTensorLearns: true);
        TestContext.Out.WriteLine($"{Spec} {cell} L={layers} {RecurrenceNames.Name(recurrence)}: largest gradient error {worst:E2} of the tensor's largest");
    }

    /// <summary>
    /// Launches per training step of a classifier, with and without the reverse direction: the recurrence doubles
    /// (2·T per layer each way per-step) and each layer boundary adds 4 gathers forward and 4 backward; the budget per layer
    /// and direction stays 2·T + 16. The host copies add the reversal map, the reversed ids and their scatter lists only.
    /// </summary>
    [Test]
    public void SteadyStepStaysInTheLaunchBudget([Values] CellKind cell, [Values(1, 2)] int layers)
    {
        const int vocab = 11, hidden = 6, batch = 4;
        var seqs = Sequences(vocab, 3).Take(batch).ToArray(); // lengths 3, 1, 9, 2: T = 9
        int[] labels = [0, 1, 0, 1];
        long Launches(bool bidirectional)
        {
            using var model = new RnnModel(Device, new ModelConfig(vocab, hidden, layers, 2, Cell: cell, Bidirectional: bidirectional), seed: 1) { Recurrence = Recurrence.PerStep };
            using var trainer = new Trainer(model, new OptimizerSettings(OptimizerKind.Adam, 0.01f, ClipNorm: 1f));
            var batcher = new SequenceBatcher(seqs, labels, batch, bos: -1, eos: -1, seed: 1);
            trainer.Step(batcher.Next(), readLoss: false); // the first step allocates the workspace
            long before = K.Launches;
            trainer.Step(batcher.Next(), readLoss: false);
            return K.Launches - before;
        }
        const int T = 9;
        long one = Launches(false), two = Launches(true);
        TestContext.Out.WriteLine($"{cell} L={layers} T={T}: {one} launches per step, {two} with --bidirectional");
        Assert.That(two, Is.LessThanOrEqualTo(2 * layers * (2 * T + 16)), "2·T + 16 per layer and direction");
        Assert.That(two - one, Is.GreaterThanOrEqualTo(layers * 2 * T), "the reverse direction runs its own T steps each way");
        Assert.That(two - one, Is.LessThanOrEqualTo(one + (8 * (layers - 1)) + 2), "no more than a second stack, the joins and the head's second half");
    }

    /// <summary>A bidirectional checkpoint keeps PyTorch's names and the flag; loading it (with and without gpurnn.config) gives the same model, and training resumes bit-identically.</summary>
    [Test]
    public void CheckpointRoundTripContinuesBitIdentically([Values(CellKind.Gru, CellKind.Lstm)] CellKind cell)
    {
        const int vocab = 9, hidden = 4, layers = 2, batch = 3;
        var vocabulary = new Vocabulary(Enumerable.Range(0, vocab).Select(i => i < 4 ? Vocabulary.Specials[i] : ((char)('a' + i)).ToString()).ToArray());
        var optimizer = new OptimizerSettings(OptimizerKind.Adam, 0.01f, ClipNorm: 1f);
        var seqs = Sequences(vocab, 5);
        int[] labels = [0, 1, 1, 0, 1];
        string path = Path.Combine(Path.GetTempPath(), $"gpurnn-bidir-{Guid.NewGuid():N}.safetensors");
        try
        {
            using var model = new RnnModel(Device, new ModelConfig(vocab, hidden, layers, 2, Cell: cell, Bidirectional: true), seed: 3);
            using var trainer = new Trainer(model, optimizer);
            var batcher = new SequenceBatcher(seqs, labels, batch, bos: -1, eos: -1, seed: 1);
            for (int i = 0; i < 3; i++)
                trainer.Step(batcher.Next(), readLoss: false);
            Checkpoint.Save(path, model, vocabulary, TokenizerKind.Char, trainer, new TrainingState(trainer.StepCount, batcher.Epoch, batcher.Position, batch, 9, 0, optimizer, 3, double.NaN),
                DataMode.Labeled, ["x", "y"]);
            var loaded = Checkpoint.Load(path);
            Assert.That(loaded.Config, Is.EqualTo(model.Config));
            Assert.That(loaded.Weights.Keys, Does.Contain("rnn.weight_ih_l0_reverse").And.Contain("rnn.bias_hh_l1_reverse"));
            Assert.That(model.Layout["rnn.weight_ih_l1"].Shape, Is.EqualTo(new[] { CellShapes.Gates(cell) * hidden, 2 * hidden }), "PyTorch's shape");

            AssertResumesIdentically(loaded, optimizer, model, trainer, batcher, new SequenceBatcher(seqs, labels, batch, bos: -1, eos: -1, seed: 1), $"{cell}");
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void ALanguageModelCannotBeBidirectional()
    {
        var ex = Assert.Throws<GpuRnnException>(() => _ = new ParameterLayout(new ModelConfig(7, 3, 1, Bidirectional: true)));
        Assert.That(ex!.Message, Does.Contain("language model cannot be bidirectional"));
    }

    [Test]
    public void TheMemoryEstimateCountsTheReverseDirection()
    {
        var one = new ModelConfig(50, 8, 2, 2, Cell: CellKind.Gru);
        var two = one with { Bidirectional = true };
        double a = TrainingMemory.Bytes(one, 4, 10, 2, validation: true), b = TrainingMemory.Bytes(two, 4, 10, 2, validation: true);
        TestContext.Out.WriteLine($"training memory: {a} B, bidirectional {b} B");
        Assert.That(b, Is.GreaterThan(a * 1.5), "a second set of states, gradients and the joined [P, 2H] buffers");
    }
}
