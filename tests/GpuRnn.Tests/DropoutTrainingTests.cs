using GpuRnn.Kernels;
using GpuRnn.Tests.Reference;
using NUnit.Framework;

namespace GpuRnn.Tests;

/// <summary>
/// Dropout in training (<see cref="ModelConfig.Dropout"/>): the loss and every gradient against the double reference given the
/// same masks, which the reference computes from the hash's definition for each (seed, update, stack, layer, element); every
/// cell, both recurrence paths, every mode; deterministic for a seed; never in evaluation.
/// </summary>
[TestFixtureSource(typeof(TestDevices), nameof(TestDevices.Specs))]
public sealed class DropoutTrainingTests(string spec) : DeviceFixture(spec)
{
    private const int B = 3, T = 7, Seed = 5;
    private const float P = 0.3f;

    /// <summary>The factors [H] of element rows (t·B + b) of a stack's layer k in update <paramref name="step"/>, as the reference applies them.</summary>
    /// <paramref name="direction"/> 1: the reverse direction of a bidirectional stack, its rows in its own step order.
    private static double[] Factors(int hidden, long step, bool encoder, int k, int t, int b, int direction = 0)
    {
        var mask = DropoutMask.Of(P, Seed, step, RecurrentStack.DropoutSite(encoder, k, direction));
        return Enumerable.Range(0, hidden).Select(j => RefOps.DropoutFactor(mask.Key, ((long)t * B + b) * hidden + j, P)).ToArray();
    }

    private Trainer NewTrainer(RnnModel model, long step) => new(model, new OptimizerSettings(OptimizerKind.Sgd, 0.1f)) { DropoutSeed = Seed, StepCount = step - 1 };


    /// <summary>Stream windows (carried state, a short last window), each a different update so each has its own masks.</summary>
    [Test]
    public void StreamWindowsMatchTheReference([Values] CellKind cell, [Values(Recurrence.PerStep, Recurrence.Fused)] Recurrence path, [Values(2, 3)] int layers)
    {
        const int vocab = 9, hidden = 5;
        using var model = new RnnModel(Device, new ModelConfig(vocab, hidden, layers, Cell: cell, Dropout: P), seed: 11) { Recurrence = path };
        var rng = new Random(3);
        var ids = Enumerable.Range(0, B * 17 + 1).Select(_ => rng.Next(vocab)).ToArray();
        var batcher = new StreamBatcher(ids, B, T);
        var reference = RefModel.FromFloats(vocab, hidden, layers, model.Layout.Tensors.ToDictionary(t => t.Name, t => model.GetTensor(t.Name)), cell);
        double[][]? h0 = null, c0 = null;
        long step = 40;
        using var trainer = NewTrainer(model, step);
        int dropped = 0;
        foreach (var (inputs, targets) in RefStream.Windows(ids, B, T))
        {
            trainer.StepCount = step - 1; // ComputeGradients keys the masks by update StepCount + 1
            trainer.ComputeGradients(batcher.Next());
            long update = step;
            var expected = RefRnn.ForwardBackward(reference, inputs, targets, h0, c0, drop: (b, k, t) => Factors(hidden, update, false, k, t, b));
            dropped += Enumerable.Range(0, layers).Sum(k => Factors(hidden, update, false, k, 0, 0).Count(f => f == 0));
            (h0, c0) = (expected.HFinal, expected.CFinal);
            Assert.That(trainer.ReadLoss(), Is.EqualTo(expected.Loss).Within(1e-5 * expected.Loss), $"loss of update {step}");
            AssertGradients(trainer, model, expected.Grads, $"{cell} {path} update {step}");
            for (int layer = 0; layer < layers; layer++)
                AssertClose(trainer.GetState(layer)!, expected.HFinal[layer], _ => 1e-5 + TestDevices.TanhTolerance(Device), $"carried (undropped) state of layer {layer}");
            step++;
        }
        Assert.That(dropped, Is.GreaterThan(0), "some outputs were dropped");
    }

    /// <summary>The reference's dropout gradients against central differences of its own loss, masks fixed (every cell).</summary>
    [Test]
    public void ReferenceMatchesFiniteDifferences([Values] CellKind cell)
    {
        const int vocab = 5, hidden = 3, layers = 2;
        var m = new RefModel(vocab, hidden, layers, cell);
        var rng = new Random(6);
        foreach (var values in m.Params.Values)
            for (int i = 0; i < values.Length; i++)
                values[i] = rng.NextDouble() - 0.5;
        int[,] inputs = { { 1, 4, 2 }, { 3, 0, 0 } }, targets = { { 4, 2, 0 }, { 0, 0, 1 } };
        double[]? Drop(int b, int k, int t) => Factors(hidden, 9, false, k, t, b);
        var exact = RefRnn.ForwardBackward(m, inputs, targets, drop: Drop);
        int dropped = 0;
        for (int b = 0; b < 2; b++)
            for (int k = 0; k < layers; k++)
                for (int t = 0; t < 3; t++)
                    dropped += Drop(b, k, t)!.Count(f => f == 0);
        Assert.That(dropped, Is.GreaterThan(0), "the masks drop something");
        const double eps = 1e-6;
        foreach (var (name, values) in m.Params)
        {
            for (int i = 0; i < values.Length; i++)
            {
                double keep = values[i];
                values[i] = keep + eps;
                double up = RefRnn.Loss(m, inputs, targets, drop: Drop);
                values[i] = keep - eps;
                double down = RefRnn.Loss(m, inputs, targets, drop: Drop);
                values[i] = keep;
                double numeric = (up - down) / (2 * eps);
                Assert.That(exact.Grads[name][i], Is.EqualTo(numeric).Within(1e-7 + 1e-6 * Math.Abs(numeric)), $"{cell} {name}[{i}]");
            }
        }
    }

    /// <summary>
    /// A padded classifier batch: dropout between the layers and on the last true state the head reads; bidirectional, each
    /// direction with its own masks (the reverse one in its own step order), before the two are joined for the layer above.
    /// </summary>
    [Test]
    public void ClassifierMatchesTheReference([Values] CellKind cell, [Values] bool bidirectional)
    {
        const int vocab = 8, hidden = 5, layers = 2, classes = 3, update = 4;
        var rng = new Random(12);
        var seqs = Enumerable.Range(0, B).Select(i => Enumerable.Range(0, 2 + 2 * i).Select(_ => rng.Next(vocab)).ToArray()).ToArray();
        int[] labels = [0, 2, 1];
        using var model = new RnnModel(Device, new ModelConfig(vocab, hidden, layers, classes, Cell: cell, Dropout: P, Bidirectional: bidirectional), seed: 8);
        using var trainer = NewTrainer(model, update);
        var window = new SequenceBatcher(seqs, labels, B, bos: -1, eos: -1, seed: 1).Next();
        trainer.ComputeGradients(window);

        var p = WeightsInDouble(model);
        var grads = p.ToDictionary(kv => kv.Key, kv => new double[kv.Value.Length]);
        double loss = 0;
        for (int b = 0; b < B; b++)
        {
            int row = b, n = window.Lengths[b];
            var seq = Enumerable.Range(0, n).Select(t => window.Inputs[t * B + row]).ToArray();
            var r = RefClassifier.ForwardBackward(p, vocab, hidden, layers, classes, seq, window.Labels[b], cell, bidirectional,
                drop: (k, t) => Factors(hidden, update, false, k, t, row), dropReverse: (k, j) => Factors(hidden, update, false, k, j, row, direction: 1));
            loss += r.Loss / B;
            foreach (var (name, g) in r.Grads)
                for (int j = 0; j < g.Length; j++)
                    grads[name][j] += g[j] / B;
        }
        Assert.That(trainer.ReadLoss(), Is.EqualTo(loss).Within(1e-5 * loss));
        AssertGradients(trainer, model, grads, $"classifier {cell} bidirectional {bidirectional}");
    }

    /// <summary>
    /// Encoder–decoder: the encoder drops between its layers only (its top layer's last states start the decoder undropped, and
    /// attention reads its top outputs undropped), the decoder between layers and before the head (with attention, the dropped
    /// top outputs are what the attention reads); with a bidirectional encoder too.
    /// </summary>
    [Test]
    public void EncoderDecoderMatchesTheReference([Values] CellKind cell, [Values] bool bidirectional, [Values(AttentionKind.None, AttentionKind.General, AttentionKind.Additive)] AttentionKind attention)
    {
        const int vocab = 8, hidden = 5, layers = 2, update = 6, bos = 2, eos = 3;
        var rng = new Random(13);
        int[][] Seqs(int start) => Enumerable.Range(0, B).Select(i => Enumerable.Range(0, start + i).Select(_ => 4 + rng.Next(vocab - 4)).ToArray()).ToArray();
        var sources = Seqs(2);
        var targets = Seqs(1);
        using var model = new RnnModel(Device, new ModelConfig(vocab, hidden, layers, EncoderDecoder: true, Cell: cell, Dropout: P, Bidirectional: bidirectional, Attention: attention), seed: 9);
        if (attention == AttentionKind.Additive)
            SequenceModeTests.SharpenAdditiveScores(model); // see there: W_q's gradient is otherwise a float32 cancellation
        using var trainer = NewTrainer(model, update);
        var window = SequenceBatcher.Pairs(sources, targets, B, bos: bos, eos: eos, seed: 1).Next();
        trainer.ComputeGradients(window);

        var p = WeightsInDouble(model);
        var grads = p.ToDictionary(kv => kv.Key, kv => new double[kv.Value.Length]);
        var source = window.Source!;
        double loss = 0;
        int tokens = 0;
        for (int b = 0; b < B; b++)
        {
            int row = b;
            var src = Enumerable.Range(0, source.Lengths[b]).Select(t => source.Inputs[t * B + row]).ToArray();
            var tgt = Enumerable.Range(1, window.Lengths[b] - 1).Select(t => window.Inputs[t * B + row]).ToArray(); // after <bos>
            var r = RefSeq2Seq.ForwardBackward(p, vocab, hidden, layers, src, tgt, bos, eos, cell, attention, bidirectional,
                encoderDrop: (k, t) => k < layers - 1 ? Factors(hidden, update, true, k, t, row) : null,
                encoderDropReverse: (k, j) => k < layers - 1 ? Factors(hidden, update, true, k, j, row, direction: 1) : null,
                decoderDrop: (k, t) => Factors(hidden, update, false, k, t, row));
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
        AssertGradients(trainer, model, grads, $"encoder–decoder {cell} bidirectional {bidirectional} attention {attention}");
    }

    /// <summary>
    /// Same seed, same weights after several updates (bit for bit); another seed other weights; p = 0 is exactly training
    /// without dropout; evaluation never drops (a p = 0.5 model evaluates as the same weights at p = 0).
    /// </summary>
    [Test]
    public void DeterministicForASeedAndOffInEvaluation([Values] CellKind cell)
    {
        const int vocab = 9, hidden = 6, layers = 2;
        var ids = Enumerable.Range(0, 600).Select(i => (i * 7 + i / 5) % vocab).ToArray();
        float[] Train(float p, int seed)
        {
            using var model = new RnnModel(Device, new ModelConfig(vocab, hidden, layers, Cell: cell, Dropout: p), seed: 3);
            using var trainer = new Trainer(model, new OptimizerSettings(OptimizerKind.Adam, 0.01f)) { DropoutSeed = seed };
            var batcher = new StreamBatcher(ids, B, T);
            for (int i = 0; i < 4; i++)
                trainer.Step(batcher.Next(), readLoss: false);
            return model.Layout.Tensors.SelectMany(t => model.GetTensor(t.Name)).ToArray();
        }
        var a = Train(0.5f, 1);
        Assert.That(Train(0.5f, 1), Is.EqualTo(a).AsCollection, "same seed, same weights");
        Assert.That(Train(0.5f, 2), Is.Not.EqualTo(a).AsCollection, "another seed, other masks");
        var plain = Train(0f, 1);
        Assert.That(Train(0f, 2), Is.EqualTo(plain).AsCollection, "p = 0: the seed plays no part");
        Assert.That(a, Is.Not.EqualTo(plain).AsCollection, "p = 0.5 drops something");

        using var dropping = new RnnModel(Device, new ModelConfig(vocab, hidden, layers, Cell: cell, Dropout: 0.5f), seed: 3);
        using var plainModel = new RnnModel(Device, new ModelConfig(vocab, hidden, layers, Cell: cell), seed: 3);
        using var p1 = new Predictor(dropping);
        using var p2 = new Predictor(plainModel);
        Assert.That(p1.Evaluate(ids, B, T).Loss, Is.EqualTo(p2.Evaluate(ids, B, T).Loss), "evaluation never drops");
    }

    /// <summary>
    /// The launch budget with dropout: one launch per dropped layer each way (L for a language model: between the layers and
    /// before the head); no allocation in the steady step (the masks are hashed, the dropped outputs preallocated).
    /// </summary>
    [Test]
    public void AddsOneLaunchPerDroppedLayerEachWay([Values] CellKind cell)
    {
        const int vocab = 11, hidden = 6, layers = 2;
        long Launches(float p)
        {
            using var model = new RnnModel(Device, new ModelConfig(vocab, hidden, layers, Cell: cell, Dropout: p), seed: 1);
            using var trainer = new Trainer(model, new OptimizerSettings(OptimizerKind.Adam, 0.01f));
            var batcher = new StreamBatcher(Enumerable.Range(0, 400).Select(i => (i * 7 + i / 5) % vocab).ToArray(), B, T);
            trainer.Step(batcher.Next());
            long before = Device.Kernels.Launches;
            trainer.Step(batcher.Next(), readLoss: false);
            return Device.Kernels.Launches - before;
        }
        Assert.That(Launches(0.4f) - Launches(0f), Is.EqualTo(2 * layers));

        using var model = new RnnModel(Device, new ModelConfig(vocab, hidden, layers, Cell: cell, Dropout: 0.4f), seed: 1);
        using var trainer = new Trainer(model, new OptimizerSettings(OptimizerKind.Adam, 0.01f, ClipNorm: 1f));
        var (perStep, launchesPerStep) = TrainerTests.SteadyAllocation(Device, trainer, new StreamBatcher(Enumerable.Range(0, 2000).Select(i => (i * 7 + i / 5) % vocab).ToArray(), B, T), 3);
        long stepLaunches = cell == CellKind.Elman ? 0 : 2L * T * layers;
        long bound = Device.Info.Kind == DeviceKind.Cpu
            ? stepLaunches * CellStackTests.CpuBytesPerGatedStepLaunch + (launchesPerStep - stepLaunches) * TrainerTests.CpuBytesPerLaunch + 4 * TrainerTests.CpuBytesPerCopy + TrainerTests.AllocationSlack
            : TrainerTests.GpuBytesPerStep;
        Assert.That(perStep, Is.LessThanOrEqualTo(bound), "managed bytes per steady-state step, as CellStackTests' bound");
    }
}
