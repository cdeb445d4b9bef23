using GpuRnn.Kernels;
using GpuRnn.Tests.Reference;
using NUnit.Framework;

namespace GpuRnn.Tests;

/// <summary>Padded batches of whole sequences (line and labelled modes) against unpadded references.</summary>
[TestFixtureSource(typeof(TestDevices), nameof(TestDevices.Specs))]
public sealed class SequenceModeTests(string spec) : DeviceFixture(spec)
{
    /// <summary>Lengths that differ, including 1 and one much longer sequence.</summary>
    internal static int[][] Sequences(int vocab, int seed, bool dateLengths = false)
    {
        var rng = new Random(seed);
        int[] lengths = dateLengths ? [18, 1, 10, 3, 17, 11] : [3, 1, 9, 2, 4]; // the dates task's sources run from 8 to 18 characters, targets 10 + eos
        return lengths.Select(n => Enumerable.Range(0, n).Select(_ => 4 + rng.Next(vocab - 4)).ToArray()).ToArray();
    }

    private static Dictionary<string, float[]> Weights(RnnModel model) => model.Layout.Tensors.ToDictionary(t => t.Name, t => model.GetTensor(t.Name));

    /// <summary>
    /// A padded batch of lines gives the loss and gradients of the same lines run one at a time,
    /// unpadded, through the stream reference (mean over all predicted tokens = count-weighted mean).
    /// </summary>
    [TestCase(1, 7, 11, CellKind.Elman)]
    [TestCase(2, 5, 9, CellKind.Elman)]
    [TestCase(2, 5, 9, CellKind.Gru)]
    [TestCase(2, 5, 9, CellKind.Lstm)]
    public void PaddedLinesEqualOneAtATime(int layers, int hidden, int vocab, CellKind cell)
    {
        var seqs = Sequences(vocab, layers);
        using var model = new RnnModel(Device, new ModelConfig(vocab, hidden, layers, Cell: cell), seed: 7);
        using var trainer = new Trainer(model, new OptimizerSettings(OptimizerKind.Sgd, 0.1f));
        var batcher = new SequenceBatcher(seqs, null, seqs.Length + 2, bos: 2, eos: 3, seed: 1); // two empty slots
        var window = batcher.Next();
        Assert.That(window.Steps, Is.EqualTo(10), "padded to the longest line + <bos>");
        trainer.ComputeGradients(window);

        var reference = RefModel.FromFloats(vocab, hidden, layers, Weights(model), cell);
        var grads = reference.Params.ToDictionary(kv => kv.Key, kv => new double[kv.Value.Length]);
        double lossSum = 0;
        int tokens = 0;
        foreach (var s in seqs)
        {
            int n = s.Length + 1;
            var inputs = new int[1, n];
            var targets = new int[1, n];
            inputs[0, 0] = 2;
            for (int t = 0; t < s.Length; t++)
            {
                inputs[0, t + 1] = s[t];
                targets[0, t] = s[t];
            }
            targets[0, s.Length] = 3;
            var r = RefRnn.ForwardBackward(reference, inputs, targets);
            lossSum += r.Loss * n;
            tokens += n;
            foreach (var (name, g) in r.Grads)
                for (int i = 0; i < g.Length; i++)
                    grads[name][i] += g[i] * n;
        }
        foreach (var g in grads.Values)
            for (int i = 0; i < g.Length; i++)
                g[i] /= tokens;
        Assert.That(trainer.ReadLoss(), Is.EqualTo(lossSum / tokens).Within(1e-5 * lossSum / tokens));
        AssertGradients(trainer, model, grads);

        // Held past each end: the state after the batch is every line's own final state (DESIGN.md §6).
        int slots = seqs.Length + 2;
        for (int layer = 0; layer < layers; layer++)
        {
            var state = trainer.GetState(layer)!; // [B, H]
            for (int i = 0; i < seqs.Length; i++)
            {
                int slot = Array.IndexOf(window.Lengths, seqs[i].Length + 1); // the lengths are distinct: they identify the slot
                var inputs = new int[1, seqs[i].Length + 1];
                inputs[0, 0] = 2;
                for (int t = 0; t < seqs[i].Length; t++)
                    inputs[0, t + 1] = seqs[i][t];
                var final = RefRnn.ForwardBackward(reference, inputs, new int[1, seqs[i].Length + 1]).HFinal[layer];
                AssertClose(state.AsSpan(slot * hidden, hidden).ToArray(), final, _ => 1e-5 + TestDevices.TanhTolerance(Device), $"held state of line {i}, layer {layer}");
            }
        }
    }

    /// <summary>Many-to-one from the last TRUE state of each sequence of a padded batch.</summary>
    [TestCase(1, 6, 10, 3, CellKind.Elman)]
    [TestCase(2, 5, 8, 2, CellKind.Elman)]
    [TestCase(2, 5, 8, 2, CellKind.Gru)]
    [TestCase(2, 5, 8, 2, CellKind.Lstm)]
    public void ClassifierMatchesTheReference(int layers, int hidden, int vocab, int classes, CellKind cell)
    {
        var seqs = Sequences(vocab, 10 + layers);
        int[] labels = seqs.Select((_, i) => i % classes).ToArray();
        using var model = new RnnModel(Device, new ModelConfig(vocab, hidden, layers, classes, Cell: cell), seed: 8);
        using var trainer = new Trainer(model, new OptimizerSettings(OptimizerKind.Sgd, 0.1f));
        var batcher = new SequenceBatcher(seqs, labels, seqs.Length + 2, bos: -1, eos: -1, seed: 1); // 2 empty slots
        trainer.ComputeGradients(batcher.Next());

        var p = Weights(model).ToDictionary(kv => kv.Key, kv => kv.Value.Select(x => (double)x).ToArray());
        var grads = p.ToDictionary(kv => kv.Key, kv => new double[kv.Value.Length]);
        double loss = 0;
        for (int i = 0; i < seqs.Length; i++)
        {
            var r = RefClassifier.ForwardBackward(p, vocab, hidden, layers, classes, seqs[i], labels[i], cell);
            loss += r.Loss / seqs.Length;
            foreach (var (name, g) in r.Grads)
                for (int j = 0; j < g.Length; j++)
                    grads[name][j] += g[j] / seqs.Length;
        }
        Assert.That(trainer.ReadLoss(), Is.EqualTo(loss).Within(1e-5 * loss));
        AssertGradients(trainer, model, grads);

        var logits = trainer.Inference.ClassLogits(batcher.InOrder().First());
        var expected = RefClassifier.ForwardBackward(p, vocab, hidden, layers, classes, seqs[0], labels[0], cell).Logits;
        AssertClose(logits[..classes], expected, _ => 1e-5 + TestDevices.TanhTolerance(Device), "class logits of the first sequence");
    }

    /// <summary>
    /// Encoder–decoder on a padded batch of pairs (sources and targets of different lengths, one of
    /// length 1, empty slots) against the unpadded reference, pair by pair, count-weighted; without attention and
    /// with Luong attention (dot, general), whose source lengths 1 to 9 in one batch check the mask, and whose
    /// encoder then gets a gradient at every source step. The bound is <see cref="AssertGradients"/>'s: the attention
    /// adds O(S + H) float32 terms per value to sums that already have more (the output layer's V, the recurrence's H per
    /// step), so 1e-5 relative to the tensor's largest gradient still holds (measured: at most 4.5e-6, LSTM general); a missing mask
    /// fails every case. With a bidirectional encoder the memory is the sum of both directions' top outputs, so the
    /// reverse direction's weights get the attention's gradient too (the reference's dTopReverse): a reverse direction left
    /// without it fails every bidirectional case with attention. Additive (Bahdanau) attention makes the decoder's first layer
    /// run step by step on the fused path too (the other layers and the encoder fused). The last three cases have the dates
    /// task's lengths (sources 1 to 18, targets to 18 + eos), so the memory's middle positions and long decoder windows are covered.
    /// </summary>
    [TestCase(1, 6, 9, CellKind.Elman, AttentionKind.None, false)]
    [TestCase(2, 5, 8, CellKind.Elman, AttentionKind.None, false)]
    [TestCase(2, 5, 8, CellKind.Gru, AttentionKind.None, false)]
    [TestCase(2, 5, 8, CellKind.Lstm, AttentionKind.None, false)]
    [TestCase(1, 6, 9, CellKind.Elman, AttentionKind.Dot, false)]
    [TestCase(1, 6, 9, CellKind.Elman, AttentionKind.General, false)]
    [TestCase(2, 5, 8, CellKind.Gru, AttentionKind.Dot, false)]
    [TestCase(2, 5, 8, CellKind.Gru, AttentionKind.General, false)]
    [TestCase(2, 5, 8, CellKind.Lstm, AttentionKind.Dot, false)]
    [TestCase(2, 5, 8, CellKind.Lstm, AttentionKind.General, false)]
    [TestCase(1, 6, 9, CellKind.Elman, AttentionKind.General, true)]
    [TestCase(1, 6, 9, CellKind.Gru, AttentionKind.General, true)]
    [TestCase(1, 6, 9, CellKind.Lstm, AttentionKind.General, true)]
    [TestCase(2, 5, 8, CellKind.Gru, AttentionKind.Dot, true)]
    [TestCase(2, 5, 8, CellKind.Gru, AttentionKind.General, true)]
    [TestCase(2, 5, 8, CellKind.Lstm, AttentionKind.General, true)]
    [TestCase(1, 6, 9, CellKind.Elman, AttentionKind.Additive, false)]
    [TestCase(1, 6, 9, CellKind.Gru, AttentionKind.Additive, false)]
    [TestCase(1, 6, 9, CellKind.Lstm, AttentionKind.Additive, false)]
    [TestCase(2, 5, 8, CellKind.Elman, AttentionKind.Additive, true)]
    [TestCase(2, 5, 8, CellKind.Gru, AttentionKind.Additive, true)]
    [TestCase(2, 5, 8, CellKind.Lstm, AttentionKind.Additive, true)]
    [TestCase(2, 5, 8, CellKind.Gru, AttentionKind.Additive, true, Recurrence.Fused)]
    [TestCase(2, 5, 8, CellKind.Lstm, AttentionKind.Additive, false, Recurrence.Fused)]
    [TestCase(1, 7, 11, CellKind.Gru, AttentionKind.Dot, false, Recurrence.PerStep, true)]
    [TestCase(1, 7, 11, CellKind.Lstm, AttentionKind.General, true, Recurrence.PerStep, true)]
    [TestCase(1, 7, 11, CellKind.Gru, AttentionKind.Additive, true, Recurrence.Fused, true)]
    public void EncoderDecoderMatchesTheReference(int layers, int hidden, int vocab, CellKind cell, AttentionKind attention, bool bidirectional,
        Recurrence recurrence = Recurrence.PerStep, bool dateLengths = false)
    {
        var sources = Sequences(vocab, 20 + layers, dateLengths);
        var targets = Sequences(vocab, 30 + layers, dateLengths).Reverse().ToArray();
        using var model = new RnnModel(Device, new ModelConfig(vocab, hidden, layers, EncoderDecoder: true, Cell: cell, Bidirectional: bidirectional, Attention: attention), seed: 9) { Recurrence = recurrence };
        if (attention == AttentionKind.Additive)
            SharpenAdditiveScores(model);
        using var trainer = new Trainer(model, new OptimizerSettings(OptimizerKind.Sgd, 0.1f));
        var batcher = SequenceBatcher.Pairs(sources, targets, sources.Length + 1, bos: 2, eos: 3, seed: 1);
        trainer.ComputeGradients(batcher.Next());

        var p = Weights(model).ToDictionary(kv => kv.Key, kv => kv.Value.Select(x => (double)x).ToArray());
        var grads = p.ToDictionary(kv => kv.Key, kv => new double[kv.Value.Length]);
        double loss = 0;
        int tokens = 0;
        for (int i = 0; i < sources.Length; i++)
        {
            var r = RefSeq2Seq.ForwardBackward(p, vocab, hidden, layers, sources[i], targets[i], 2, 3, cell, attention, bidirectional);
            loss += r.Loss * r.Count;
            tokens += r.Count;
            foreach (var (name, g) in r.Grads)
                for (int j = 0; j < g.Length; j++)
                    grads[name][j] += g[j] * r.Count;
        }
        foreach (var g in grads.Values)
            for (int j = 0; j < g.Length; j++)
                g[j] /= tokens;
        Assert.That(model.Layout.Tensors.Select(t => t.Name), Does.Contain("encoder.rnn.weight_hh_l0").And.Contain("decoder.out.weight"));
        Assert.That(model.Layout.Tensors.Any(t => t.Name == "attention.combine.weight"), Is.EqualTo(attention is AttentionKind.Dot or AttentionKind.General));
        Assert.That(model.Layout.Tensors.Any(t => t.Name == "attention.score.weight"), Is.EqualTo(attention == AttentionKind.Additive));
        Assert.That(model.Layout.Tensors.Any(t => t.Name == "attention.weight"), Is.EqualTo(attention == AttentionKind.General));
        Assert.That(trainer.ReadLoss(), Is.EqualTo(loss / tokens).Within(1e-5 * loss / tokens));
        AssertGradients(trainer, model, grads);
        double worst = model.Layout.Tensors.Max(t =>
        {
            var e = grads[t.Name];
            var got = trainer.GetGradient(t.Name);
            return Enumerable.Range(0, e.Length).Max(i => Math.Abs(got[i] - e[i])) / e.Max(Math.Abs);
        });
        TestContext.Out.WriteLine($"{cell} {attention} bidirectional={bidirectional}: largest gradient error relative to its tensor's largest gradient {worst:G3}");
    }

    /// <summary>
    /// W_q's gradient Σ_t dq_t s_tᵀ has dq = Σ_j de_j v ⊙ (1 − u_j²) with Σ_j de_j = 0: only the spread of 1 − u_j² over the
    /// source positions survives. At initialisation the keys W_k m_j barely differ (that spread is about 1e-3), so dq is a
    /// cancellation whose float32 rounding (1e-7 of its terms) is 1e-4 of the result, far above a bound relative to the
    /// tensor's largest gradient (measured: LSTM W_q gradients of 1e-8 off by 4e-4 of themselves, every other tensor within
    /// 5e-6). Key and score weights 8 times larger spread the keys and the weights, so the test measures the attention's
    /// backward, not that cancellation.
    /// </summary>
    internal static void SharpenAdditiveScores(RnnModel model)
    {
        foreach (var name in new[] { "attention.score.weight", "attention.key.weight" })
            model.SetTensor(name, model.GetTensor(name).Select(x => 8f * x).ToArray());
    }

    [TestCase(AttentionKind.None, CellKind.Elman, false)]
    [TestCase(AttentionKind.Dot, CellKind.Elman, false)]
    [TestCase(AttentionKind.General, CellKind.Elman, false)]
    [TestCase(AttentionKind.General, CellKind.Elman, true)]
    [TestCase(AttentionKind.General, CellKind.Gru, true)]
    [TestCase(AttentionKind.General, CellKind.Lstm, true)]
    [TestCase(AttentionKind.Dot, CellKind.Lstm, true)]
    [TestCase(AttentionKind.Additive, CellKind.Elman, false)]
    [TestCase(AttentionKind.Additive, CellKind.Gru, false)]
    [TestCase(AttentionKind.Additive, CellKind.Lstm, false)]
    [TestCase(AttentionKind.Additive, CellKind.Gru, true)]
    [TestCase(AttentionKind.Additive, CellKind.Lstm, true)]
    public void ReferenceEncoderDecoderMatchesFiniteDifferences(AttentionKind attention, CellKind cell, bool bidirectional)
    {
        const int v = 6, h = 3, layers = 2;
        var rng = new Random(4);
        var config = new ModelConfig(v, h, layers, EncoderDecoder: true, Cell: cell, Bidirectional: bidirectional, Attention: attention);
        var p = new ParameterLayout(config).Tensors.ToDictionary(t => t.Name, t => Enumerable.Range(0, (int)t.Length).Select(_ => rng.NextDouble() - 0.5).ToArray());
        int[] src = [4, 5, 1], tgt = [5, 4];
        double Loss() => RefSeq2Seq.ForwardBackward(p, v, h, layers, src, tgt, 2, 3, cell, attention, bidirectional).Loss;
        var (_, _, grads) = RefSeq2Seq.ForwardBackward(p, v, h, layers, src, tgt, 2, 3, cell, attention, bidirectional);
        const double eps = 1e-6;
        foreach (var (name, values) in p)
        {
            for (int i = 0; i < values.Length; i++)
            {
                double keep = values[i];
                values[i] = keep + eps;
                double up = Loss();
                values[i] = keep - eps;
                double down = Loss();
                values[i] = keep;
                double numeric = (up - down) / (2 * eps);
                Assert.That(grads[name][i], Is.EqualTo(numeric).Within(1e-7 + 1e-6 * Math.Abs(numeric)), $"{name}[{i}]");
            }
        }
    }

    [Test]
    public void ReferenceClassifierMatchesFiniteDifferences()
    {
        const int v = 6, h = 4, layers = 2, c = 3;
        var rng = new Random(2);
        var p = new ParameterLayout(v, h, layers, c).Tensors.ToDictionary(t => t.Name, t => Enumerable.Range(0, (int)t.Length).Select(_ => rng.NextDouble() - 0.5).ToArray());
        int[] seq = [1, 4, 2, 5];
        var (_, grads, _) = RefClassifier.ForwardBackward(p, v, h, layers, c, seq, 2);
        const double eps = 1e-6;
        foreach (var (name, values) in p)
        {
            for (int i = 0; i < values.Length; i++)
            {
                double keep = values[i];
                values[i] = keep + eps;
                double up = RefClassifier.ForwardBackward(p, v, h, layers, c, seq, 2).Loss;
                values[i] = keep - eps;
                double down = RefClassifier.ForwardBackward(p, v, h, layers, c, seq, 2).Loss;
                values[i] = keep;
                double numeric = (up - down) / (2 * eps);
                Assert.That(grads[name][i], Is.EqualTo(numeric).Within(1e-7 + 1e-6 * Math.Abs(numeric)), $"{name}[{i}]");
            }
        }
    }
}
