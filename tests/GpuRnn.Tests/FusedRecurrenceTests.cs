using GpuRnn.Kernels;
using NUnit.Framework;

namespace GpuRnn.Tests;

/// <summary>
/// The fused recurrence (one launch per layer and direction for all T steps, DESIGN.md §9) against the per-step
/// path: the same cell epilogues on the same sums in the same order, so on the CPU accelerator the losses,
/// gradients, states and trained weights must be identical bit for bit; elsewhere within float32 rounding.
/// Small sizes: the CPU accelerator emulates the group barrier between steps. The CPU accelerator with forced
/// shared tiles runs the fused groups with 2 rows and 4 threads each (see DeviceKernels), so the barrier and the
/// row split are exercised without a GPU.
/// </summary>
[TestFixtureSource(typeof(TestDevices), nameof(TestDevices.TiledSpecs))]
public sealed class FusedRecurrenceTests(string spec) : DeviceFixture(spec)
{
    /// <summary>
    /// Off the CPU accelerator a compiler may contract a·b + c into one FMA differently in the two kernels: a few
    /// float32 roundings per step, compounded over a handful of steps; far below any real fault (a missing
    /// barrier, a wrong step offset or a lost carry change results at the 1e-2 level).
    /// </summary>
    private const double Rtol = 1e-5, Atol = 1e-6;

    private const int B = 3, T = 7;

    private static StreamBatcher Batcher(int vocab, int tokens, int steps = T) =>
        new(Enumerable.Range(0, tokens).Select(i => (i * 7 + i / 5) % vocab).ToArray(), B, steps);

    private static int[][] Sequences(int vocab, int seed)
    {
        var rng = new Random(seed);
        int[] lengths = [3, 1, 9, 2, 4];
        return lengths.Select(n => Enumerable.Range(0, n).Select(_ => 4 + rng.Next(vocab - 4)).ToArray()).ToArray();
    }

    /// <summary>Two models of one seed, one on each path.</summary>
    private (RnnModel PerStep, RnnModel Fused) Models(ModelConfig config, int seed)
    {
        var perStep = new RnnModel(Device, config, seed) { Recurrence = Recurrence.PerStep };
        var fused = new RnnModel(Device, config, seed) { Recurrence = Recurrence.Fused };
        return (perStep, fused);
    }

    /// <summary>Equal bit for bit on the CPU accelerator, within float32 rounding elsewhere; returns the largest difference.</summary>
    private double AssertSame(float[] fused, float[] perStep, string what)
    {
        Assert.That(fused, Has.Length.EqualTo(perStep.Length), what + ": length");
        double worst = 0, scale = perStep.Length == 0 ? 0 : perStep.Max(v => Math.Abs((double)v));
        for (int i = 0; i < fused.Length; i++)
        {
            double d = Math.Abs((double)fused[i] - perStep[i]);
            worst = Math.Max(worst, double.IsNaN(d) ? double.PositiveInfinity : d);
            if (Device.Info.Kind == DeviceKind.Cpu)
                Assert.That(BitConverter.SingleToInt32Bits(fused[i]), Is.EqualTo(BitConverter.SingleToInt32Bits(perStep[i])),
                    $"{what}[{i}]: fused {fused[i]:R}, per-step {perStep[i]:R}");
            else
                Assert.That(d, Is.LessThanOrEqualTo(Atol * scale + Rtol * Math.Abs(perStep[i])), $"{what}[{i}]: fused {fused[i]:R}, per-step {perStep[i]:R}");
        }
        return worst;
    }

    /// <summary>Loss, every gradient and every layer's state (h and an LSTM's c) of two trainers; returns the largest difference.</summary>
    private double AssertSameRun(Trainer fused, Trainer perStep, RnnModel model, string what)
    {
        double worst = AssertSame([fused.ReadLoss()], [perStep.ReadLoss()], what + " loss");
        foreach (var t in model.Layout.Tensors)
            worst = Math.Max(worst, AssertSame(fused.GetGradient(t.Name), perStep.GetGradient(t.Name), $"{what} d{t.Name}"));
        for (int layer = 0; layer < model.Config.Layers; layer++)
        {
            var h = perStep.GetState(layer);
            if (h is not null)
                worst = Math.Max(worst, AssertSame(fused.GetState(layer)!, h, $"{what} h of layer {layer}"));
            var c = perStep.GetCellState(layer);
            if (c is not null)
                worst = Math.Max(worst, AssertSame(fused.GetCellState(layer)!, c, $"{what} c of layer {layer}"));
        }
        return worst;
    }

    /// <summary>Stream mode: three Adam steps with the state carried between windows; losses, gradients, states and weights.</summary>
    [Test]
    public void StreamWindowsWithCarriedStateEqualPerStep([Values] CellKind cell, [Values(1, 2)] int layers)
    {
        const int vocab = 11, hidden = 6;
        var config = new ModelConfig(vocab, hidden, layers, Cell: cell);
        var (perStepModel, fusedModel) = Models(config, seed: 3);
        using var m1 = perStepModel;
        using var m2 = fusedModel;
        var settings = new OptimizerSettings(OptimizerKind.Adam, 0.01f, ClipNorm: 1f);
        using var perStep = new Trainer(m1, settings);
        using var fused = new Trainer(m2, settings);
        var b1 = Batcher(vocab, 400);
        var b2 = Batcher(vocab, 400);
        double worst = 0;
        for (int step = 0; step < 3; step++)
        {
            perStep.ComputeGradients(b1.Next());
            fused.ComputeGradients(b2.Next());
            worst = Math.Max(worst, AssertSameRun(fused, perStep, m1, $"step {step}"));
            perStep.ApplyUpdate();
            fused.ApplyUpdate();
        }
        foreach (var t in m1.Layout.Tensors)
            worst = Math.Max(worst, AssertSame(m2.GetTensor(t.Name), m1.GetTensor(t.Name), "trained " + t.Name));
        TestContext.Out.WriteLine($"{Spec} {cell} L={layers} stream: largest |fused − per-step| = {worst:G3}");
    }

    /// <summary>A padded batch of lines (held rows past each end, two empty slots): gradients, loss and held final states.</summary>
    [Test]
    public void PaddedLinesEqualPerStep([Values] CellKind cell)
    {
        const int vocab = 9, hidden = 5, layers = 2;
        var seqs = Sequences(vocab, 2);
        var (perStepModel, fusedModel) = Models(new ModelConfig(vocab, hidden, layers, Cell: cell), seed: 7);
        using var m1 = perStepModel;
        using var m2 = fusedModel;
        using var perStep = new Trainer(m1, new OptimizerSettings(OptimizerKind.Sgd, 0.1f));
        using var fused = new Trainer(m2, new OptimizerSettings(OptimizerKind.Sgd, 0.1f));
        var window = new SequenceBatcher(seqs, null, seqs.Length + 2, bos: 2, eos: 3, seed: 1).Next();
        Assert.That(window.Padded, Is.True);
        perStep.ComputeGradients(window);
        fused.ComputeGradients(window);
        double worst = AssertSameRun(fused, perStep, m1, "lines");
        TestContext.Out.WriteLine($"{Spec} {cell} lines: largest |fused − per-step| = {worst:G3}");
    }

    /// <summary>A padded classifier batch (the head reads each sequence's last true state), and its inference logits.</summary>
    [Test]
    public void ClassifierEqualsPerStep([Values] CellKind cell)
    {
        const int vocab = 8, hidden = 5, layers = 2, classes = 3;
        var seqs = Sequences(vocab, 12);
        int[] labels = seqs.Select((_, i) => i % classes).ToArray();
        var (perStepModel, fusedModel) = Models(new ModelConfig(vocab, hidden, layers, classes, Cell: cell), seed: 8);
        using var m1 = perStepModel;
        using var m2 = fusedModel;
        using var perStep = new Trainer(m1, new OptimizerSettings(OptimizerKind.Sgd, 0.1f));
        using var fused = new Trainer(m2, new OptimizerSettings(OptimizerKind.Sgd, 0.1f));
        var batcher = new SequenceBatcher(seqs, labels, seqs.Length + 2, bos: -1, eos: -1, seed: 1);
        var window = batcher.Next();
        perStep.ComputeGradients(window);
        fused.ComputeGradients(window);
        double worst = AssertSameRun(fused, perStep, m1, "classifier");
        var first = batcher.InOrder().First();
        worst = Math.Max(worst, AssertSame(fused.Inference.ClassLogits(first), perStep.Inference.ClassLogits(first), "class logits"));
        TestContext.Out.WriteLine($"{Spec} {cell} classifier: largest |fused − per-step| = {worst:G3}");
    }

    /// <summary>
    /// Encoder–decoder on a padded batch of pairs: the decoder's initial-state gradients enter the encoder at each
    /// source's last true step (h through dH, an LSTM's c through the injected carry) on both paths alike.
    /// </summary>
    [Test]
    public void EncoderDecoderEqualsPerStep([Values] CellKind cell, [Values(1, 2)] int layers)
    {
        const int vocab = 8, hidden = 5;
        var sources = Sequences(vocab, 20 + layers);
        var targets = Sequences(vocab, 30 + layers).Reverse().ToArray();
        var (perStepModel, fusedModel) = Models(new ModelConfig(vocab, hidden, layers, EncoderDecoder: true, Cell: cell), seed: 9);
        using var m1 = perStepModel;
        using var m2 = fusedModel;
        using var perStep = new Trainer(m1, new OptimizerSettings(OptimizerKind.Sgd, 0.1f));
        using var fused = new Trainer(m2, new OptimizerSettings(OptimizerKind.Sgd, 0.1f));
        var window = SequenceBatcher.Pairs(sources, targets, sources.Length + 1, bos: 2, eos: 3, seed: 1).Next();
        perStep.ComputeGradients(window);
        fused.ComputeGradients(window);
        double worst = AssertSameRun(fused, perStep, m1, "encoder–decoder");
        TestContext.Out.WriteLine($"{Spec} {cell} L={layers} encoder–decoder: largest |fused − per-step| = {worst:G3}");
    }

    /// <summary>Launches of one steady training step on a path at window length <paramref name="steps"/>.</summary>
    private long LaunchesPerStep(Recurrence recurrence, CellKind cell, int layers, int steps)
    {
        const int vocab = 11, hidden = 6;
        using var model = new RnnModel(Device, new ModelConfig(vocab, hidden, layers, Cell: cell), seed: 1) { Recurrence = recurrence };
        using var trainer = new Trainer(model, new OptimizerSettings(OptimizerKind.Adam, 0.01f, ClipNorm: 1f));
        var batcher = Batcher(vocab, 400, steps);
        trainer.Step(batcher.Next()); // the first step allocates the workspace
        long launches = K.Launches;
        trainer.Step(batcher.Next(), readLoss: false);
        return K.Launches - launches;
    }

    /// <summary>The fused path's launches per training step do not depend on T and stay within 16 + 8·L (issue 10).</summary>
    [Test]
    public void FusedLaunchesPerStepAreIndependentOfT([Values] CellKind cell, [Values(1, 2)] int layers)
    {
        long shortWindow = LaunchesPerStep(Recurrence.Fused, cell, layers, 3);
        long longWindow = LaunchesPerStep(Recurrence.Fused, cell, layers, 2 * T);
        long perStep = LaunchesPerStep(Recurrence.PerStep, cell, layers, 2 * T);
        TestContext.Out.WriteLine($"{cell} L={layers}: fused {longWindow} launches per step at T={2 * T} ({shortWindow} at T=3), per-step {perStep}");
        Assert.That(longWindow, Is.EqualTo(shortWindow), "independent of T");
        Assert.That(longWindow, Is.LessThanOrEqualTo(16 + 8 * layers), "issue 10 budget");
        Assert.That(perStep - longWindow, Is.EqualTo(2L * layers * (2 * T - 1)), "one launch per layer and direction instead of one per step");
    }

    /// <summary>
    /// ILGPU's CPU accelerator allocates a task object with a launch's arguments (TrainerTests.CpuBytesPerLaunch); the
    /// fused launches carry a whole window's views (up to ten and the held rows), measured (ILGPU 1.5.3, .NET 10,
    /// 2026-11-30) at most about 330 B each, so 400 B per fused launch; a string or closure per step still exceeds it.
    /// </summary>
    private const long CpuBytesPerFusedLaunch = 400;

    /// <summary>As TrainerTests.SteadyStepAllocatesNoManagedMemoryOfItsOwn, on the fused path for every cell and two layers.</summary>
    [Test]
    public void FusedSteadyStepAllocatesNoManagedMemoryOfItsOwn([Values] CellKind cell)
    {
        const int vocab = 11, hidden = 6, steps = 3;
        using var model = new RnnModel(Device, new ModelConfig(vocab, hidden, 2, Cell: cell), seed: 1) { Recurrence = Recurrence.Fused };
        using var trainer = new Trainer(model, new OptimizerSettings(OptimizerKind.Adam, 0.01f, ClipNorm: 1f));
        var (perStep, launchesPerStep) = TrainerTests.SteadyAllocation(Device, trainer, Batcher(vocab, 2000), steps);
        const long copiesPerStep = 4; // ids, targets, the scatter offsets and positions
        const long fusedLaunches = 2 * 2; // forward and backward, 2 layers
        long bound = Device.Info.Kind == DeviceKind.Cpu
            ? fusedLaunches * CpuBytesPerFusedLaunch + (launchesPerStep - fusedLaunches) * TrainerTests.CpuBytesPerLaunch
                + copiesPerStep * TrainerTests.CpuBytesPerCopy + TrainerTests.AllocationSlack
            : TrainerTests.GpuBytesPerStep;
        TestContext.Out.WriteLine($"{Spec} {cell} fused: {perStep} managed B per step, {launchesPerStep} launches, bound {bound} B");
        Assert.That(perStep, Is.LessThanOrEqualTo(bound), "managed bytes per steady-state step");
    }

    /// <summary>
    /// Auto follows the H200 measurement: fused for Elman and GRU layers with H ≤ 128 on a GPU, per-step otherwise;
    /// an explicit choice is kept; the names round-trip.
    /// </summary>
    [Test]
    public void AutoFollowsTheGpuMeasurementAndTheNamesRoundTrip()
    {
        Assert.That(RecurrenceNames.Resolve(Recurrence.Auto, gpu: true, CellKind.Elman, 128), Is.EqualTo(Recurrence.Fused));
        Assert.That(RecurrenceNames.Resolve(Recurrence.Auto, gpu: true, CellKind.Gru, 64), Is.EqualTo(Recurrence.Fused));
        Assert.That(RecurrenceNames.Resolve(Recurrence.Auto, gpu: true, CellKind.Lstm, 128), Is.EqualTo(Recurrence.PerStep));
        Assert.That(RecurrenceNames.Resolve(Recurrence.Auto, gpu: true, CellKind.Elman, 129), Is.EqualTo(Recurrence.PerStep));
        Assert.That(RecurrenceNames.Resolve(Recurrence.Auto, gpu: false, CellKind.Elman, 16), Is.EqualTo(Recurrence.PerStep));
        Assert.That(RecurrenceNames.Resolve(Recurrence.PerStep, gpu: true, CellKind.Elman, 16), Is.EqualTo(Recurrence.PerStep));
        Assert.That(RecurrenceNames.Resolve(Recurrence.Fused, gpu: false, CellKind.Lstm, 1024), Is.EqualTo(Recurrence.Fused));
        foreach (var r in Enum.GetValues<Recurrence>())
            Assert.That(RecurrenceNames.Parse(RecurrenceNames.Name(r)), Is.EqualTo(r));
        Assert.That(RecurrenceNames.Parse("fast"), Is.Null);
    }
}
