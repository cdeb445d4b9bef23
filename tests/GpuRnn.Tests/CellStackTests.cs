using System.Text.Json;
using GpuRnn.Checkpoints;
using GpuRnn.Kernels;
using NUnit.Framework;

namespace GpuRnn.Tests;

/// <summary>The recurrent stack with every cell: launch and copy budget, no allocation in the steady step, checkpoints.</summary>
[TestFixtureSource(typeof(TestDevices), nameof(TestDevices.Specs))]
public sealed class CellStackTests(string spec) : DeviceFixture(spec)
{
    private const int B = 3, T = 7;

    private static StreamBatcher Batcher(int vocab, int tokens) => new(Enumerable.Range(0, tokens).Select(i => (i * 7 + i / 5) % vocab).ToArray(), B, T);

    /// <summary>
    /// DESIGN.md §3a: one launch per time step per layer forward and one backward for every cell, at most
    /// 2·T + 16 launches per layer per step; and the only host copies are the window's ids, targets and
    /// scatter lists.
    /// </summary>
    [Test]
    public void SteadyStepStaysInTheLaunchBudget([Values] CellKind cell, [Values(1, 2)] int layers)
    {
        const int vocab = 11, hidden = 6;
        using var model = new RnnModel(Device, new ModelConfig(vocab, hidden, layers, Cell: cell), seed: 1);
        using var trainer = new Trainer(model, new OptimizerSettings(OptimizerKind.Adam, 0.01f, ClipNorm: 1f));
        var batcher = Batcher(vocab, 400);
        trainer.Step(batcher.Next()); // the first step allocates the workspace
        var k = Device.Kernels;
        long launches = k.Launches, toDevice = k.BytesToDevice, toHost = k.BytesToHost;
        trainer.Step(batcher.Next(), readLoss: false);
        long stepLaunches = k.Launches - launches;
        TestContext.Out.WriteLine($"{cell} L={layers}: {stepLaunches} launches per step at T={T} (2·T·L = {2 * T * layers})");
        Assert.That(stepLaunches, Is.LessThanOrEqualTo(layers * (2 * T + 16)), "DESIGN.md §3a budget per layer");
        Assert.That(stepLaunches, Is.GreaterThanOrEqualTo(layers * 2 * T), "one launch per step per layer each way");
        int p = B * T;
        Assert.That(k.BytesToDevice - toDevice, Is.EqualTo(4L * (p + p + (vocab + 1) + p)), "ids, targets and the scatter lists only");
        Assert.That(k.BytesToHost - toHost, Is.Zero, "nothing comes back unless the loss is read");
    }

    /// <summary>
    /// ILGPU's CPU accelerator allocates a task object holding a kernel's arguments in every launch (see
    /// TrainerTests.CpuBytesPerLaunch). The gated cells' step kernels carry larger epilogues (up to eight
    /// views and the held-row lengths): measured (ILGPU 1.5.3, .NET 10, 2026-11-30) about 75 B more per
    /// launch than the GEMM's, i.e. about 307 B; so 320 B per step launch of a GRU or LSTM, 240 B for every
    /// other launch. A string, closure or boxed argument of 64 B per launch still exceeds the bound.
    /// </summary>
    internal const long CpuBytesPerGatedStepLaunch = 320;

    /// <summary>As TrainerTests.SteadyStepAllocatesNoManagedMemoryOfItsOwn, for every cell and two layers.</summary>
    [Test]
    public void SteadyStepAllocatesNoManagedMemoryOfItsOwn([Values] CellKind cell)
    {
        const int vocab = 11, hidden = 6, steps = 3;
        using var model = new RnnModel(Device, new ModelConfig(vocab, hidden, 2, Cell: cell), seed: 1);
        using var trainer = new Trainer(model, new OptimizerSettings(OptimizerKind.Adam, 0.01f, ClipNorm: 1f));
        var (perStep, launchesPerStep) = TrainerTests.SteadyAllocation(Device, trainer, Batcher(vocab, 2000), steps);
        const long copiesPerStep = 4; // ids, targets, the scatter offsets and positions
        long stepLaunches = cell == CellKind.Elman ? 0 : 2L * T * 2; // forward and backward, T steps, 2 layers
        long bound = Device.Info.Kind == DeviceKind.Cpu
            ? stepLaunches * CpuBytesPerGatedStepLaunch + (launchesPerStep - stepLaunches) * TrainerTests.CpuBytesPerLaunch
                + copiesPerStep * TrainerTests.CpuBytesPerCopy + TrainerTests.AllocationSlack
            : TrainerTests.GpuBytesPerStep;
        TestContext.Out.WriteLine($"{Spec} {cell}: {perStep} managed B per step, {launchesPerStep} launches, bound {bound} B");
        Assert.That(perStep, Is.LessThanOrEqualTo(bound), "managed bytes per steady-state step");
    }

    /// <summary>A file made elsewhere (tensors and the vocabulary only, as from PyTorch) gets its cell from weight_hh_l0: rows ÷ columns.</summary>
    [Test]
    public void AFileWithoutConfigGetsItsCellFromTheShapes([Values] CellKind cell)
    {
        const int vocab = 6, hidden = 3;
        var layout = new ParameterLayout(new ModelConfig(vocab, hidden, 2, Cell: cell));
        var tokens = Vocabulary.Specials.Concat(["a", "b"]).ToArray();
        string path = Path.Combine(Path.GetTempPath(), $"gpurnn-torch-{Guid.NewGuid():N}.safetensors");
        try
        {
            var tensors = layout.Tensors.Select(t => new TensorEntry(t.Name, t.Shape, new float[t.Length])).ToList();
            new SafeTensorsFile(tensors, new Dictionary<string, string> { [Checkpoint.VocabKey] = JsonSerializer.Serialize(tokens) }).Write(path);
            var loaded = Checkpoint.Load(path);
            Assert.That(loaded.Config, Is.EqualTo(new ModelConfig(vocab, hidden, 2, Cell: cell)));

            string other = cell == CellKind.Lstm ? "gru" : "lstm";
            new SafeTensorsFile(tensors, new Dictionary<string, string>
            {
                [Checkpoint.VocabKey] = JsonSerializer.Serialize(tokens),
                [Checkpoint.ConfigKey] = $"{{\"cell\": \"{other}\"}}",
            }).Write(path);
            var ex = Assert.Throws<GpuRnnException>(() => Checkpoint.Load(path));
            Assert.That(ex!.Message, Does.Contain($"says cell {other}").And.Contain("weight_hh_l0"));
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>
    /// A checkpoint with resume state holds nn.GRU / nn.LSTM shapes, the cell, the optimizer slots and the
    /// carried state (an LSTM's c too); a trainer restored from it continues bit-identically.
    /// </summary>
    [Test]
    public void CheckpointRoundTripContinuesBitIdentically([Values] CellKind cell)
    {
        const int vocab = 9, hidden = 5, layers = 2;
        var vocabulary = new Vocabulary(Enumerable.Range(0, vocab).Select(i => i < 4 ? Vocabulary.Specials[i] : ((char)('a' + i)).ToString()).ToArray());
        var optimizer = new OptimizerSettings(OptimizerKind.Adam, 0.01f, ClipNorm: 1f);
        string path = Path.Combine(Path.GetTempPath(), $"gpurnn-cell-{Guid.NewGuid():N}.safetensors");
        try
        {
            using var model = new RnnModel(Device, new ModelConfig(vocab, hidden, layers, Cell: cell), seed: 3);
            using var trainer = new Trainer(model, optimizer);
            var batcher = Batcher(vocab, 300);
            for (int i = 0; i < 3; i++)
                trainer.Step(batcher.Next(), readLoss: false);
            Checkpoint.Save(path, model, vocabulary, TokenizerKind.Char, trainer, new TrainingState(trainer.StepCount, batcher.Epoch, batcher.Position, B, T, 0, optimizer, 3, double.NaN));

            var loaded = Checkpoint.Load(path);
            Assert.That(loaded.Config, Is.EqualTo(model.Config), "the cell and the sizes come back");
            int g = CellShapes.Gates(cell);
            Assert.That(loaded.Weights.Keys, Is.EquivalentTo(model.Layout.Tensors.Select(t => t.Name)));
            Assert.That(model.Layout["rnn.weight_hh_l1"].Shape, Is.EqualTo(new[] { g * hidden, hidden }), "PyTorch's shape");
            Assert.That(model.Layout["rnn.weight_ih_l0"].Shape, Is.EqualTo(new[] { g * hidden, vocab }));
            Assert.That(loaded.HiddenState, Has.Count.EqualTo(layers));
            Assert.That(loaded.CellState, Has.Count.EqualTo(cell == CellKind.Lstm ? layers : 0), "state.c_l{k} for an LSTM only");
            for (int layer = 0; layer < layers; layer++)
            {
                Assert.That(loaded.HiddenState[layer], Is.EqualTo(trainer.GetState(layer)).AsCollection, $"state.h_l{layer}");
                if (cell == CellKind.Lstm)
                    Assert.That(loaded.CellState[layer], Is.EqualTo(trainer.GetCellState(layer)).AsCollection, $"state.c_l{layer}");
            }

            AssertResumesIdentically(loaded, optimizer, model, trainer, batcher, Batcher(vocab, 300), $"{cell}");
        }
        finally
        {
            File.Delete(path);
        }
    }
}
