using GpuRnn.Kernels;
using ILGPU;
using ILGPU.Runtime;

namespace GpuRnn;

/// <summary>
/// Trains an <see cref="RnnModel"/> with truncated BPTT: forward over a window, mean cross-entropy,
/// backward through time, one optimizer update (DESIGN.md §3). Owns the gradients, the optimizer state
/// and the training workspace; the state is carried from one window to the next without gradient.
/// Nothing is allocated on the device inside the steady-state step. Validation runs through
/// <see cref="Inference"/>, which has a workspace (and state) of its own.
/// </summary>
public sealed class Trainer : IDisposable
{
    private readonly RnnModel model;
    private readonly DeviceKernels k;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> gradients; // [P], laid out like the parameters
    private readonly MemoryBuffer1D<float, Stride1D.Dense>[] slots;   // optimizer state, each [P]
    private Network? network; // the training windows' workspace, with the carried state
    private Predictor? inference;
    private float lossScale;

    /// <summary>A trainer for <paramref name="model"/> that updates it with <paramref name="optimizer"/>.</summary>
    /// <exception cref="GpuRnnException">An optimizer setting is out of range.</exception>
    public Trainer(RnnModel model, OptimizerSettings optimizer)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(optimizer);
        optimizer.Validate();
        this.model = model;
        Optimizer = optimizer;
        LearningRate = optimizer.LearningRate;
        k = model.Device.Kernels;
        var accelerator = model.Device.Accelerator;
        gradients = accelerator.Allocate1D<float>(model.Layout.Count);
        gradients.MemSetToZero();
        slots = new MemoryBuffer1D<float, Stride1D.Dense>[optimizer.SlotCount];
        for (int i = 0; i < slots.Length; i++)
        {
            slots[i] = accelerator.Allocate1D<float>(model.Layout.Count);
            slots[i].MemSetToZero();
        }
    }

    /// <summary>The update rule.</summary>
    public OptimizerSettings Optimizer { get; }

    /// <summary>The rate of the next update: <see cref="OptimizerSettings.LearningRate"/> unless a schedule sets it (<see cref="LearningRateSchedule.Rate"/>).</summary>
    public float LearningRate { get; set; }

    /// <summary>Optimizer updates applied so far (Adam's bias corrections count from here).</summary>
    public long StepCount { get; set; }

    /// <summary>The run's seed, which with the update number keys the dropout masks (<see cref="ModelConfig.Dropout"/>), so a seed gives the same masks and a resumed run continues them.</summary>
    public int DropoutSeed { get; set; }

    /// <summary>The flat gradient buffer [P] of the last backward pass.</summary>
    public ArrayView<float> Gradients => gradients.View;

    /// <summary>Evaluation, logits and decoding of the model being trained, with a workspace and state of their own (created on first use).</summary>
    public Predictor Inference => inference ??= new Predictor(model);

    /// <summary>One training step: forward, loss, backward, optimizer update. Returns the window's mean loss when <paramref name="readLoss"/> (one 4-byte device → host copy), else null.</summary>
    public float? Step(TokenWindow window, bool readLoss = true)
    {
        ComputeGradients(window);
        float? loss = readLoss ? ReadLoss() : null;
        ApplyUpdate();
        return loss;
    }

    /// <summary>
    /// Forward and backward over <paramref name="window"/>: afterwards <see cref="Gradients"/> holds
    /// d(mean loss)/d(parameters) and the carried state has moved to the window's last step.
    /// </summary>
    public void ComputeGradients(TokenWindow window)
    {
        ArgumentNullException.ThrowIfNull(window);
        var net = network = Network.Fit(network, model, window, training: true);
        net.KeyDropout(DropoutSeed, StepCount + 1); // the masks of update number StepCount + 1
        int counted = net.Forward(model, window, withLoss: true);
        lossScale = counted > 0 ? 1f / counted : 0f;
        net.Backward(model, gradients.View, window);
        // Σ g² for clipping and for the divergence check that callers may make before the update.
        k.ReduceSum(gradients.View.Length, true, gradients.View, net.Scalars, Network.NormSlot);
        net.Carry(k, window.Steps); // after backward, which reads the initial state
    }

    /// <summary>The mean loss of the last <see cref="ComputeGradients"/> window (reads one float from the device).</summary>
    public float ReadLoss()
    {
        var net = network ?? throw new InvalidOperationException("no window has been run yet.");
        Span<float> sum = stackalloc float[1];
        k.Download(net.Scalars.SubView(Network.LossSlot, 1), sum);
        return sum[0] * lossScale;
    }

    /// <summary>
    /// The mean loss and the global L2 norm of the gradients of the last <see cref="ComputeGradients"/>
    /// window in one 8-byte copy, so that a caller can refuse a NaN or infinite step before
    /// <see cref="ApplyUpdate"/> lets it reach the weights. The norm is infinite when Σ g² overflows.
    /// </summary>
    public (float Loss, float GradNorm) ReadLossAndNorm()
    {
        var net = network ?? throw new InvalidOperationException("no window has been run yet.");
        Span<float> both = stackalloc float[2];
        k.Download(net.Scalars.SubView(0, 2), both);
        return (both[Network.LossSlot] * lossScale, MathF.Sqrt(both[Network.NormSlot]));
    }

    /// <summary>Applies one optimizer update (with clipping) from the current <see cref="Gradients"/>.</summary>
    public void ApplyUpdate()
    {
        var net = network ?? throw new InvalidOperationException("no gradients have been computed yet.");
        var o = Optimizer;
        var p = model.Parameters;
        var g = gradients.View;
        StepCount++;
        var args = o.ArgsForStep(StepCount, LearningRate);
        switch (o.Kind)
        {
            case OptimizerKind.Sgd:
                k.Sgd(args, p, g, slots.Length > 0 ? slots[0].View : g, net.Scalars, Network.NormSlot);
                break;
            case OptimizerKind.Adagrad:
                k.Adagrad(args, p, g, slots[0].View, net.Scalars, Network.NormSlot);
                break;
            case OptimizerKind.RmsProp:
                k.RmsProp(args, p, g, slots[0].View, net.Scalars, Network.NormSlot);
                break;
            case OptimizerKind.Adam:
                k.Adam(args, p, g, slots[0].View, slots[1].View, net.Scalars, Network.NormSlot);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(Optimizer), o.Kind, "unknown optimizer");
        }
    }

    /// <summary>Device bytes held by the parameters, gradients, optimizer slots and both workspaces (what <see cref="TrainingMemory"/> predicts).</summary>
    internal long DeviceBytes =>
        model.Parameters.LengthInBytes + gradients.LengthInBytes + slots.Sum(x => x.LengthInBytes) + (network?.Bytes ?? 0) + (inference?.DeviceBytes ?? 0);

    /// <summary>Copies optimizer slot <paramref name="slot"/> [P] to the host.</summary>
    public float[] GetSlot(int slot)
    {
        var host = new float[model.Layout.Count];
        k.Download(slots[slot].View, host);
        return host;
    }

    /// <summary>Overwrites optimizer slot <paramref name="slot"/> [P] (resume).</summary>
    public void SetSlot(int slot, ReadOnlySpan<float> values)
    {
        if (values.Length != model.Layout.Count)
            throw new ArgumentException($"slot data has {values.Length} values; the model has {model.Layout.Count} parameters.", nameof(values));
        k.Upload(values, slots[slot].View);
    }

    /// <summary>
    /// Sets the carried state of every layer for windows of B sequences and up to T steps (resume): h
    /// [B·H] per layer, and an LSTM's c [B·H] per layer in <paramref name="cellStates"/>.
    /// </summary>
    public void SetState(int batch, int seqLen, IReadOnlyList<float[]> states, IReadOnlyList<float[]>? cellStates = null)
    {
        ArgumentNullException.ThrowIfNull(states);
        int layers = model.Layout.L;
        if (states.Count != layers)
            throw new ArgumentException($"{states.Count} layer states given; the model has {layers} layers.", nameof(states));
        bool lstm = CellShapes.HasCellState(model.Config.Cell);
        if (lstm != (cellStates is not null) || (cellStates is not null && cellStates.Count != layers))
            throw new ArgumentException(lstm ? $"an LSTM needs the cell state c of each of its {layers} layers." : "only an LSTM has a cell state.", nameof(cellStates));
        var window = new TokenWindow(batch, seqLen) { Steps = seqLen, Source = model.Config.EncoderDecoder ? new TokenWindow(batch, 1) : null };
        var net = network = Network.Fit(network, model, window, training: true);
        for (int layer = 0; layer < layers; layer++)
        {
            k.Upload<float>(states[layer], net.Stack.State(layer, 0));
            if (cellStates is not null)
                k.Upload<float>(cellStates[layer], net.Stack.CellState(layer, 0));
        }
    }

    /// <summary>Copies one gradient tensor to the host.</summary>
    public float[] GetGradient(string name)
    {
        var host = new float[model.Layout[name].Length];
        k.Download(model.ViewOf(gradients.View, name), host);
        return host;
    }

    /// <summary>The carried hidden state h of one layer, [B, H], or null before the first window.</summary>
    public float[]? GetState(int layer) => network is null ? null : Download(network.Stack.State(layer, 0));

    /// <summary>The carried cell state c of one LSTM layer, [B, H], or null before the first window or for another cell.</summary>
    public float[]? GetCellState(int layer) => network is null || !network.Stack.HasCellState ? null : Download(network.Stack.CellState(layer, 0));

    private float[] Download(ArrayView<float> view)
    {
        var host = new float[view.Length];
        k.Download(view, host);
        return host;
    }

    /// <summary>Releases the workspaces, optimizer state and gradients (reverse order of creation).</summary>
    public void Dispose()
    {
        inference?.Dispose();
        network?.Dispose();
        for (int i = slots.Length - 1; i >= 0; i--)
            slots[i].Dispose();
        gradients.Dispose();
    }
}
