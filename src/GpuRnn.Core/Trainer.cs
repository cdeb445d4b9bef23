using GpuRnn.Kernels;
using ILGPU;
using ILGPU.Runtime;

namespace GpuRnn;

/// <summary>
/// Trains an <see cref="RnnModel"/> as a language model with truncated BPTT: forward over a
/// window, mean cross-entropy, backward through time, one optimizer update (DESIGN.md §3). Owns the
/// gradients, the optimizer state and the activations; the hidden state is carried from one window
/// to the next without gradient. Nothing is allocated on the device inside the steady-state step.
/// </summary>
public sealed class Trainer : IDisposable
{
    private readonly RnnModel model;
    private readonly DeviceKernels k;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> gradients; // [P], laid out like the parameters
    private readonly MemoryBuffer1D<float, Stride1D.Dense>[] slots;   // optimizer state, each [P]
    private Activations? act;
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

    /// <summary>Optimizer updates applied so far (Adam's bias corrections count from here).</summary>
    public long StepCount { get; set; }

    /// <summary>The flat gradient buffer [P] of the last backward pass.</summary>
    public ArrayView<float> Gradients => gradients.View;

    /// <summary>The optimizer's state buffers [P] each, in <see cref="OptimizerSettings.SlotNames"/> order.</summary>
    public IReadOnlyList<ArrayView<float>> Slots => slots.Select(s => (ArrayView<float>)s.View).ToArray();

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
    /// d(mean loss)/d(parameters) and the carried hidden state has moved to the window's last step.
    /// </summary>
    public void ComputeGradients(TokenWindow window)
    {
        ArgumentNullException.ThrowIfNull(window);
        var layout = model.Layout;
        int v = layout.V, h = layout.H, layers = layout.L;
        int b = window.Batch, s = window.Steps, p = window.Positions;
        if (s < 1 || s > window.Capacity)
            throw new ArgumentException($"window holds {s} steps; it must be between 1 and {window.Capacity}.", nameof(window));
        var a = Prepare(b, window.Capacity);
        if (window.ResetState)
        {
            for (int layer = 0; layer < layers; layer++)
                k.Clear(a.HiddenAt(layer, 0, h));
        }

        // Host → device: the ids, the targets, and the per-token position lists for the dW_ih scatter.
        var inputs = window.Inputs.AsSpan(0, p);
        var targets = window.Targets.AsSpan(0, p);
        int counted = 0;
        foreach (int t in targets)
        {
            if (t >= v)
                throw new ArgumentOutOfRangeException(nameof(window), $"target id {t} is outside the vocabulary of {v}.");
            if (t >= 0)
                counted++;
        }
        DeviceKernels.TokenPositions(inputs, v, a.HostOffsets, a.HostPositions);
        k.Upload<int>(inputs, a.Ids.View);
        k.Upload<int>(targets, a.Targets.View);
        k.Upload<int>(a.HostOffsets, a.TokenOffsets.View);
        k.Upload<int>(a.HostPositions.AsSpan(0, p), a.TokenPositions.View);
        lossScale = counted > 0 ? 1f / counted : 0f;

        long ph = (long)p * h;
        var x = a.X.View.SubView(0, ph);
        var dH = a.DH.View.SubView(0, ph);
        var dZ = a.DZ.View.SubView(0, ph);
        var logits = a.Logits.View.SubView(0, (long)p * v);

        // ---- forward, layer by layer: the input term for all s steps at once, then the recurrence.
        for (int layer = 0; layer < layers; layer++)
        {
            var bIh = model.View($"rnn.bias_ih_l{layer}");
            var bHh = model.View($"rnn.bias_hh_l{layer}");
            if (layer == 0)
                k.EmbeddingForward(p, h, v, a.Ids.View, model.View("rnn.weight_ih_l0"), bIh, bHh, x);
            else
                k.GemmBias(new GemmShape(p, h, h, false, true), Outputs(a, layer - 1, s, h), model.View($"rnn.weight_ih_l{layer}"), x, bIh, bHh);
            var wHh = model.View($"rnn.weight_hh_l{layer}");
            for (int t = 0; t < s; t++)
                k.RecurrentForward(b, h, a.HiddenAt(layer, t, h), wHh, x.SubView((long)t * b * h, (long)b * h), a.HiddenAt(layer, t + 1, h));
        }
        var top = Outputs(a, layers - 1, s, h);
        k.GemmBias(new GemmShape(p, v, h, false, true), top, model.View("decoder.weight"), logits, model.View("decoder.bias"));
        k.SoftmaxCrossEntropy(p, v, lossScale, logits, a.Targets.View, a.RowLoss.View, logits); // logits now hold dlogits
        k.ReduceSum(p, false, a.RowLoss.View, a.Scalars.View, Activations.LossSlot);

        // ---- backward, in reverse: decoder, then each layer's time loop from the top layer down.
        var g = gradients.View;
        k.Gemm(new GemmShape(p, h, v, false, false), 1f, logits, model.View("decoder.weight"), 0f, dH);        // dH [P, H] = dlogits · W_dec
        k.Gemm(new GemmShape(v, h, p, true, false), 1f, logits, top, 0f, model.ViewOf(g, "decoder.weight"));    // dW_dec [V, H] = dlogitsᵀ · H_top
        var dbDec = model.ViewOf(g, "decoder.bias");
        k.ColumnSum(p, v, logits, dbDec, dbDec);
        for (int layer = layers - 1; layer >= 0; layer--)
        {
            var wHh = model.View($"rnn.weight_hh_l{layer}");
            long bh = (long)b * h;
            for (int t = s - 1; t >= 0; t--)
            {
                var dzNext = t + 1 < s ? dZ.SubView((t + 1) * bh, bh) : dZ.SubView(0, bh);
                k.RecurrentBackward(b, h, t + 1 < s, dzNext, wHh, dH.SubView(t * bh, bh), a.HiddenAt(layer, t + 1, h), dZ.SubView(t * bh, bh));
            }
            // dW_hh [H, H] = Σ_t dz_tᵀ h_{t−1}: one GEMM over all s·B positions (h_0 … h_{s−1}).
            k.Gemm(new GemmShape(h, h, p, true, false), 1f, dZ, a.Hidden[layer].View.SubView(0, ph), 0f, model.ViewOf(g, $"rnn.weight_hh_l{layer}"));
            k.ColumnSum(p, h, dZ, model.ViewOf(g, $"rnn.bias_ih_l{layer}"), model.ViewOf(g, $"rnn.bias_hh_l{layer}"));
            if (layer == 0)
            {
                k.EmbeddingBackward(h, v, a.TokenOffsets.View, a.TokenPositions.View, dZ, model.ViewOf(g, "rnn.weight_ih_l0"));
            }
            else
            {
                var below = Outputs(a, layer - 1, s, h);
                k.Gemm(new GemmShape(h, h, p, true, false), 1f, dZ, below, 0f, model.ViewOf(g, $"rnn.weight_ih_l{layer}")); // dW_ih = dZᵀ · H_below
                k.Gemm(new GemmShape(p, h, h, false, false), 1f, dZ, model.View($"rnn.weight_ih_l{layer}"), 0f, dH);      // dH_below = dZ · W_ih
            }
        }

        // Carry the state: the last step's h becomes the next window's h_0 (after backward, which reads h_0).
        for (int layer = 0; layer < layers; layer++)
            k.Copy(a.HiddenAt(layer, s, h), a.HiddenAt(layer, 0, h));
    }

    /// <summary>The mean loss of the last <see cref="ComputeGradients"/> window (reads one float from the device).</summary>
    public float ReadLoss()
    {
        var a = act ?? throw new InvalidOperationException("no window has been run yet.");
        Span<float> sum = stackalloc float[1];
        k.Download(a.Scalars.View.SubView(Activations.LossSlot, 1), sum);
        return sum[0] * lossScale;
    }

    /// <summary>Applies one optimizer update (with clipping) from the current <see cref="Gradients"/>.</summary>
    public void ApplyUpdate()
    {
        var a = act ?? throw new InvalidOperationException("no gradients have been computed yet.");
        var o = Optimizer;
        var p = model.Parameters;
        var g = gradients.View;
        if (o.ClipNorm > 0f)
            k.ReduceSum(g.Length, true, g, a.Scalars.View, Activations.NormSlot);
        StepCount++;
        var args = o.ArgsForStep(StepCount);
        switch (o.Kind)
        {
            case OptimizerKind.Sgd:
                k.Sgd(args, p, g, slots.Length > 0 ? slots[0].View : g, a.Scalars.View, Activations.NormSlot);
                break;
            case OptimizerKind.Adagrad:
                k.Adagrad(args, p, g, slots[0].View, a.Scalars.View, Activations.NormSlot);
                break;
            case OptimizerKind.RmsProp:
                k.RmsProp(args, p, g, slots[0].View, a.Scalars.View, Activations.NormSlot);
                break;
            case OptimizerKind.Adam:
                k.Adam(args, p, g, slots[0].View, slots[1].View, a.Scalars.View, Activations.NormSlot);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(Optimizer), o.Kind, "unknown optimizer");
        }
    }

    /// <summary>Copies one gradient tensor to the host.</summary>
    public float[] GetGradient(string name)
    {
        var host = new float[model.Layout[name].Length];
        k.Download(model.ViewOf(gradients.View, name), host);
        return host;
    }

    /// <summary>The carried hidden state of one layer, [B, H], or null before the first window.</summary>
    public float[]? GetState(int layer)
    {
        if (act is null)
            return null;
        var host = new float[act.Batch * model.Layout.H];
        k.Download(act.HiddenAt(layer, 0, model.Layout.H), host);
        return host;
    }

    /// <summary>Layer k's outputs h_1 … h_s as one [s·B, H] block (the next layer's and the decoder's input).</summary>
    private static ArrayView<float> Outputs(Activations a, int layer, int s, int h)
    {
        long bh = (long)a.Batch * h;
        return a.Hidden[layer].View.SubView(bh, s * bh);
    }

    /// <summary>The activations for (B, T): allocated on the first window, re-allocated only for a larger shape (the carried state survives when B is unchanged).</summary>
    private Activations Prepare(int batch, int capacity)
    {
        if (act is not null && act.Batch == batch && act.Capacity >= capacity)
            return act;
        var fresh = new Activations(model.Device.Accelerator, model.Layout, batch, capacity);
        if (act is not null)
        {
            if (act.Batch == batch)
            {
                for (int layer = 0; layer < model.Layout.L; layer++)
                    k.Copy(act.HiddenAt(layer, 0, model.Layout.H), fresh.HiddenAt(layer, 0, model.Layout.H));
            }
            act.Dispose();
        }
        act = fresh;
        return act;
    }

    /// <summary>Releases the activations, optimizer state and gradients (reverse order of creation).</summary>
    public void Dispose()
    {
        act?.Dispose();
        for (int i = slots.Length - 1; i >= 0; i--)
            slots[i].Dispose();
        gradients.Dispose();
    }
}
