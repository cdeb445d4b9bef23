using GpuRnn.Checkpoints;
using GpuRnn.Kernels;
using NUnit.Framework;

namespace GpuRnn.Tests;

/// <summary>An encoder–decoder with Luong attention: launches, allocation, memory, determinism and checkpoints.</summary>
[TestFixtureSource(typeof(TestDevices), nameof(TestDevices.Specs))]
public sealed class AttentionNetworkTests(string spec) : DeviceFixture(spec)
{
    private const int Vocab = 9, Hidden = 5, B = 3;

    /// <summary>Pairs of fixed lengths (source <paramref name="sourceLength"/>, target 4), so every window has the same sizes.</summary>
    private static SequenceBatcher Pairs(int sourceLength, int count = 60)
    {
        var rng = new Random(sourceLength);
        int[][] Seqs(int n) => Enumerable.Range(0, count).Select(_ => Enumerable.Range(0, n).Select(_ => 4 + rng.Next(Vocab - 4)).ToArray()).ToArray();
        return SequenceBatcher.Pairs(Seqs(sourceLength), Seqs(4), B, bos: 2, eos: 3, seed: 1);
    }

    private RnnModel Model(CellKind cell, AttentionKind attention, int layers = 1, bool bidirectional = false) =>
        new(Device, new ModelConfig(Vocab, Hidden, layers, EncoderDecoder: true, Cell: cell, Bidirectional: bidirectional, Attention: attention), seed: 3);

    private long LaunchesPerStep(CellKind cell, AttentionKind attention, int sourceLength, bool bidirectional = false)
    {
        using var model = Model(cell, attention, bidirectional: bidirectional);
        using var trainer = new Trainer(model, new OptimizerSettings(OptimizerKind.Adam, 0.01f, ClipNorm: 1f));
        return TrainerTests.SteadyAllocation(Device, trainer, Pairs(sourceLength), 2).LaunchesPerStep;
    }

    /// <summary>
    /// Attention runs over all decoder steps at once: it adds a fixed number of launches per training step whatever
    /// the source and target lengths. Forward: scores, masked softmax, context, the two halves of W_c, tanh (+ Q = H·W_a
    /// for general) = 6 (7); backward: tanh, dW_c twice, dC, dH, dA, dM, masked softmax, dQ, dM again (+ dH += dQ·W_aᵀ
    /// and dW_a) = 10 (12). A bidirectional encoder's memory is the sum of its directions' top outputs: 2 launches more
    /// forward (copy, reversed add) and 1 backward (dM reversed into the reverse direction's gradient).
    /// </summary>
    [Test]
    public void AttentionAddsAFixedNumberOfLaunchesPerStep([Values] CellKind cell, [Values] bool bidirectional)
    {
        int memory = bidirectional ? 2 + 1 : 0;
        foreach (int sourceLength in new[] { 2, 9 })
        {
            long none = LaunchesPerStep(cell, AttentionKind.None, sourceLength, bidirectional);
            long dot = LaunchesPerStep(cell, AttentionKind.Dot, sourceLength, bidirectional);
            long general = LaunchesPerStep(cell, AttentionKind.General, sourceLength, bidirectional);
            TestContext.Out.WriteLine($"{cell} L=1{(bidirectional ? " bidirectional" : "")}, source {sourceLength}, target 5 steps: {none} launches per step without attention, {dot} with dot, {general} with general");
            Assert.That(dot - none, Is.EqualTo(6 + 10 + memory), "dot");
            Assert.That(general - none, Is.EqualTo(7 + 12 + memory), "general");
        }
    }

    /// <summary>
    /// Bahdanau attention feeds each step's context into the next decoder step's input, so it needs launches per step:
    /// 2 forward (scores with the softmax; the input) and 1 backward per decoder step, plus per window 2 forward (keys and
    /// values of the memory) and 8 backward (dV, dW_ctx, dM, dK, dv, dW_k, dM again, dW_q): 3·T + 10, within the issue's
    /// 4·T + 16 for the decoder layer it feeds, whatever the source length.
    /// </summary>
    [Test]
    public void AdditiveAttentionLaunchesStayWithinTheStepBudget([Values] CellKind cell, [Values] bool bidirectional)
    {
        const int decoderSteps = 5; // bos + the 4 target tokens
        int memory = bidirectional ? 2 + 1 : 0;
        foreach (int sourceLength in new[] { 2, 9 })
        {
            long none = LaunchesPerStep(cell, AttentionKind.None, sourceLength, bidirectional);
            long additive = LaunchesPerStep(cell, AttentionKind.Additive, sourceLength, bidirectional);
            TestContext.Out.WriteLine($"{cell} L=1{(bidirectional ? " bidirectional" : "")}, source {sourceLength}, target {decoderSteps} steps: {none} launches per step without attention, {additive} with additive");
            Assert.That(additive - none, Is.EqualTo(3 * decoderSteps + 10 + memory), "additive");
            Assert.That(additive - none - memory, Is.LessThanOrEqualTo(4 * decoderSteps + 16), "4·T + 16 for the decoder layer it feeds");
        }
    }

    /// <summary>
    /// As TrainerTests.SteadyStepAllocatesNoManagedMemoryOfItsOwn (its per-launch and per-copy bounds, Elman so that
    /// no launch carries a gated epilogue): host copies per step are the encoder's ids, scatter offsets and positions,
    /// lengths and last rows (5), the attention's source lengths (1), the decoder's ids, scatter lists and lengths (4)
    /// and the targets (1). Additive attention's own kernels carry up to eleven views and their sizes, as many arguments as
    /// the gated cells' step epilogues, so its 3 launches per decoder step and 2 per window get CellStackTests'
    /// CpuBytesPerGatedStepLaunch (measured, Elman L = 2, 5 decoder steps: 26616 B per step against 26336 B with 240 B for
    /// every launch, 27696 B with 320 B for those 17).
    /// </summary>
    [Test]
    public void SteadyStepAllocatesNoManagedMemoryOfItsOwn([Values] AttentionKind attention)
    {
        using var model = Model(CellKind.Elman, attention, layers: 2);
        using var trainer = new Trainer(model, new OptimizerSettings(OptimizerKind.Adam, 0.01f, ClipNorm: 1f));
        var (perStep, launchesPerStep) = TrainerTests.SteadyAllocation(Device, trainer, Pairs(6), 3);
        const long copiesPerStep = 11;
        const int decoderSteps = 5; // bos + the 4 target tokens
        long additiveLaunches = attention == AttentionKind.Additive ? 3 * decoderSteps + 2 : 0;
        long bound = Device.Info.Kind == DeviceKind.Cpu
            ? launchesPerStep * TrainerTests.CpuBytesPerLaunch + additiveLaunches * (CellStackTests.CpuBytesPerGatedStepLaunch - TrainerTests.CpuBytesPerLaunch)
                + copiesPerStep * TrainerTests.CpuBytesPerCopy + TrainerTests.AllocationSlack
            : TrainerTests.GpuBytesPerStep;
        TestContext.Out.WriteLine($"{Spec} {attention}: {perStep} managed B per step, {launchesPerStep} launches, bound {bound} B");
        Assert.That(perStep, Is.LessThanOrEqualTo(bound), "managed bytes per steady-state step");
    }

    /// <summary>
    /// The memory estimate (TrainingMemory, from the constructors over a counting owner) covers the attention's
    /// buffers exactly: lengths [B] ints; scores/weights and their gradient [T·B, S]; context, h̃ and their gradients
    /// [T·B, H]; general adds Q and dQ [T·B, H].
    /// </summary>
    [TestCase(AttentionKind.Dot, 4)]
    [TestCase(AttentionKind.General, 6)]
    public void MemoryEstimateCoversTheAttention(AttentionKind attention, int positionByHidden)
    {
        const int t = 7, s = 11;
        var plain = new ModelConfig(Vocab, Hidden, 2, EncoderDecoder: true);
        var with = plain with { Attention = attention };
        long p = (long)B * t;
        long parameters = (attention == AttentionKind.General ? Hidden * Hidden : 0) + 2 * Hidden * Hidden;
        double expected = 4.0 * (B + 2 * p * s + positionByHidden * p * Hidden) + 4.0 * parameters * (2 + 2);
        Assert.That(TrainingMemory.Bytes(with, B, t, 2, validation: false, s) - TrainingMemory.Bytes(plain, B, t, 2, validation: false, s), Is.EqualTo(expected));
    }

    /// <summary>
    /// Additive: lengths [B] ints; keys and dKeys [S·B, H], values and dValues [S·B, G] (G = 3H, GRU); query and dQuery [T·B, H];
    /// weights and dScores [T·B, S]; parameters W_q, W_k [H, H], v [1, H], W_ctx [G, H].
    /// </summary>
    [Test]
    public void MemoryEstimateCoversTheAdditiveAttention()
    {
        const int t = 7, s = 11, g = 3 * Hidden;
        var plain = new ModelConfig(Vocab, Hidden, 2, EncoderDecoder: true, Cell: CellKind.Gru);
        var with = plain with { Attention = AttentionKind.Additive };
        long p = (long)B * t;
        long parameters = 2 * Hidden * Hidden + Hidden + g * Hidden;
        double expected = 4.0 * (B + 2 * (s * B * (Hidden + g)) + 2 * p * Hidden + 2 * p * s) + 4.0 * parameters * (2 + 2);
        Assert.That(TrainingMemory.Bytes(with, B, t, 2, validation: false, s) - TrainingMemory.Bytes(plain, B, t, 2, validation: false, s), Is.EqualTo(expected));
    }

    /// <summary>Two runs of the same step give the same loss and gradients to the last bit.</summary>
    [Test]
    public void GradientsAreDeterministic([Values(AttentionKind.Dot, AttentionKind.General, AttentionKind.Additive)] AttentionKind attention)
    {
        float[][] Run()
        {
            using var model = Model(CellKind.Gru, attention, layers: 2);
            using var trainer = new Trainer(model, new OptimizerSettings(OptimizerKind.Sgd, 0.1f));
            trainer.ComputeGradients(Pairs(7).Next());
            return [.. model.Layout.Tensors.Select(t => trainer.GetGradient(t.Name)), [trainer.ReadLoss()]];
        }
        var first = Run();
        var second = Run();
        for (int i = 0; i < first.Length; i++)
            Assert.That(second[i], Is.EqualTo(first[i]).AsCollection, $"tensor {i}");
    }

    /// <summary>
    /// Greedy decoding attends one step at a time (the same kernels with T_dec = 1); teacher-forcing its own output through
    /// the whole window at once must pick the same token at every step (and eos where it stopped), for two sources of
    /// different lengths in one batch, so the mask holds in decoding too.
    /// </summary>
    [Test]
    public void GreedyDecodingAgreesWithTheWholeWindow([Values(AttentionKind.Dot, AttentionKind.General, AttentionKind.Additive)] AttentionKind attention)
    {
        const int bos = 2, eos = 3, maxLength = 6;
        using var model = Model(CellKind.Gru, attention, layers: 2);
        using var predictor = new Predictor(model);
        int[][] sources = [[4, 5, 6, 7, 8, 4, 5], [6]];
        var source = new TokenWindow(2, 7) { Steps = 7, Padded = true };
        Array.Fill(source.Inputs, -1);
        for (int b = 0; b < 2; b++)
        {
            source.Lengths[b] = sources[b].Length;
            for (int t = 0; t < sources[b].Length; t++)
                source.Inputs[t * 2 + b] = sources[b][t];
        }
        var decoded = predictor.Decode(source, 2, bos, eos, maxLength, []);
        for (int b = 0; b < 2; b++)
        {
            var tokens = decoded[b];
            int steps = Math.Min(tokens.Count + 1, maxLength);
            var window = new TokenWindow(2, steps) { Steps = steps, Padded = true, Source = source };
            Array.Fill(window.Inputs, -1);
            Array.Fill(window.Targets, -1);
            Array.Fill(window.Lengths, 1);
            window.Lengths[b] = steps;
            for (int t = 0; t < steps; t++)
                window.Inputs[t * 2 + b] = t == 0 ? bos : tokens[t - 1];
            var logits = predictor.Logits(window);
            for (int t = 0; t < steps; t++)
            {
                var row = logits.AsSpan((t * 2 + b) * Vocab, Vocab).ToArray();
                int best = Array.IndexOf(row, row.Max());
                Assert.That(best, Is.EqualTo(t < tokens.Count ? tokens[t] : eos), $"sequence {b}, step {t}");
            }
        }
    }

    /// <summary>
    /// Beam search on a briefly trained model (reversal, 40 Adam steps): a beam of 1 decodes exactly what greedy decoding
    /// does, and a beam of 3 finds an answer whose length-normalised log-probability is at least as high.
    /// </summary>
    [Test]
    public void BeamOfOneIsGreedyAndWiderBeamsScoreAtLeastAsHigh()
    {
        const int bos = 2, eos = 3, maxLength = 6;
        using var model = Model(CellKind.Gru, AttentionKind.General);
        using var trainer = new Trainer(model, new OptimizerSettings(OptimizerKind.Adam, 0.02f));
        var rng = new Random(5);
        var sources = Enumerable.Range(0, 64).Select(_ => Enumerable.Range(0, 2 + rng.Next(3)).Select(_ => 4 + rng.Next(Vocab - 4)).ToArray()).ToArray();
        var batcher = SequenceBatcher.Pairs(sources, sources.Select(s => s.Reverse().ToArray()).ToArray(), 8, bos, eos, seed: 1);
        for (int i = 0; i < 40; i++)
            trainer.Step(batcher.Next(), readLoss: false);
        var predictor = trainer.Inference;
        var window = batcher.InOrder().First();
        var greedy = predictor.Decode(window.Source!, window.Batch, bos, eos, maxLength, [bos]);
        int wider = 0;
        for (int i = 0; i < window.Batch; i++)
        {
            var one = predictor.DecodeBeam(window.Source!, i, 1, bos, eos, maxLength, [bos]);
            Assert.That(one.Tokens, Is.EqualTo(greedy[i]), $"sequence {i}: beam 1 = greedy");
            var three = predictor.DecodeBeam(window.Source!, i, 3, bos, eos, maxLength, [bos]);
            Assert.That(three.Score, Is.GreaterThanOrEqualTo(one.Score), $"sequence {i}: beam 3 score");
            wider += three.Score > one.Score ? 1 : 0;
        }
        TestContext.Out.WriteLine($"beam 3 beat greedy's score on {wider} of {window.Batch} sources");
    }

    /// <summary>A checkpoint keeps the attention: its tensors under their names, the kind in the config and from the tensors.</summary>
    [Test]
    public void CheckpointKeepsTheAttention([Values(AttentionKind.Dot, AttentionKind.General, AttentionKind.Additive)] AttentionKind attention)
    {
        using var model = Model(CellKind.Lstm, attention);
        var vocabulary = new Vocabulary(Vocabulary.Specials.Concat(Enumerable.Range(0, Vocab - Vocabulary.Specials.Count).Select(i => ((char)('a' + i)).ToString())));
        string path = Path.Combine(Path.GetTempPath(), $"gpurnn-attention-{Guid.NewGuid():N}.safetensors");
        try
        {
            Checkpoint.Save(path, model, vocabulary, TokenizerKind.Char, mode: DataMode.Pairs);
            var loaded = Checkpoint.Load(path);
            Assert.That(loaded.Config, Is.EqualTo(model.Config));
            using var copy = loaded.CreateModel(Device);
            foreach (var t in model.Layout.Attention!.Tensors)
                Assert.That(copy.GetTensor(t.Name), Is.EqualTo(model.GetTensor(t.Name)).AsCollection, t.Name);
            if (attention == AttentionKind.Additive)
            {
                Assert.That(copy.Layout["attention.context.weight"].Shape, Is.EqualTo(new[] { 4 * Hidden, Hidden }), "W_ctx [G, H] of an LSTM");
                Assert.That(copy.Layout["attention.score.weight"].Shape, Is.EqualTo(new[] { 1, Hidden }));
            }
            else
            {
                Assert.That(copy.Layout["attention.combine.weight"].Shape, Is.EqualTo(new[] { Hidden, 2 * Hidden }));
            }
        }
        finally
        {
            File.Delete(path);
        }
    }
}
