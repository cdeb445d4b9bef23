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
    private Activations? act;     // training windows, with the carried state
    private Activations? evalAct; // evaluation windows, with a state of their own
    private Activations? encAct;  // the encoder of an encoder–decoder
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
        act = Prepare(act, window);
        var a = act;
        var layout = model.Layout;
        int v = layout.V, h = layout.H;
        int b = window.Batch, s = window.Steps, p = window.Positions;
        UploadTokenPositions(a, window);
        if (model.Config.EncoderDecoder)
            Encode(Source(window), a, training: true);
        int counted = Forward(a, window);
        lossScale = counted > 0 ? 1f / counted : 0f;

        long ph = (long)p * h;
        var dH = a.DH.View.SubView(0, ph);
        var logits = model.Config.IsClassifier ? default : a.Logits.View.SubView(0, (long)p * v);
        var top = Outputs(a, layout.L - 1, s, h);

        // ---- backward, in reverse: the output layer, then each layer's time loop from the top layer down.
        var g = gradients.View;
        var dbDec = RnnModel.ViewOf(g, model.Layout.DecoderBias);
        if (!model.Config.IsClassifier)
        {
            k.Gemm(new GemmShape(p, h, v, false, false), 1f, logits, model.View(model.Layout.DecoderWeight), 0f, dH);          // dH [P, H] = dlogits · W_dec
            k.Gemm(new GemmShape(v, h, p, true, false), 1f, logits, top, 0f, RnnModel.ViewOf(g, model.Layout.DecoderWeight)); // dW_dec [V, H] = dlogitsᵀ · H_top
            k.ColumnSum(p, v, logits, dbDec, dbDec);
        }
        else
        {
            int c = model.Config.Classes;
            var dClass = a.Logits.View.SubView(0, (long)b * c);                                                                        // [B, C]
            k.Gemm(new GemmShape(b, h, c, false, false), 1f, dClass, model.View(model.Layout.DecoderWeight), 0f, a.DLast.View);         // dLast [B, H] = dlogits · W_dec
            k.Gemm(new GemmShape(c, h, b, true, false), 1f, dClass, a.HLast.View, 0f, RnnModel.ViewOf(g, model.Layout.DecoderWeight)); // dW_dec [C, H] = dlogitsᵀ · h_last
            k.ColumnSum(b, c, dClass, dbDec, dbDec);
            k.LastStateBackward(p, b, h, a.LastRows.View, a.DLast.View, dH); // the gradient enters at each sequence's last true step only
        }
        if (!model.Config.EncoderDecoder)
        {
            BackwardStack(a, layout.Stack, window, inject: default, dh0: default);
        }
        else
        {
            // The decoder's initial states are the encoder's last true states: their gradients
            // (dh_0 = dz_0 · W_hh per layer) enter the encoder at each source's last step.
            BackwardStack(a, layout.Stack, window, inject: default, dh0: a.DH0.View);
            var e = encAct!;
            BackwardStack(e, layout.Encoder!, Source(window), inject: a.DH0.View, dh0: default);
        }

        // Σ g² for clipping and for the divergence check that callers may make before the update.
        k.ReduceSum(g.Length, true, g, a.Scalars.View, Activations.NormSlot);
        Carry(a, s); // after backward, which reads h_0
    }

    /// <summary>
    /// Backpropagation through time of one stack, top layer first. On entry <c>a.DH</c> holds the
    /// gradient w.r.t. the top layer's outputs, unless <paramref name="inject"/> [L, B, H] is given:
    /// then each layer's output gradient also receives inject[layer] at each sequence's last true step
    /// (the encoder of an encoder–decoder; its top layer gets nothing else). With <paramref name="dh0"/>
    /// [L, B, H], the gradient w.r.t. each layer's initial state is written there.
    /// </summary>
    private void BackwardStack(Activations a, RnnStack stack, TokenWindow window, ArrayView<float> inject, ArrayView<float> dh0)
    {
        int v = model.Layout.V, h = model.Layout.H, layers = model.Layout.L;
        int b = window.Batch, s = window.Steps, p = window.Positions;
        long ph = (long)p * h, bh = (long)b * h;
        var dH = a.DH.View.SubView(0, ph);
        var dZ = a.DZ.View.SubView(0, ph);
        var g = gradients.View;
        var lengths = window.Padded ? a.Lengths.View : default; // uploaded by the forward pass
        if (inject.IsValid)
            k.LastStateBackward(p, b, h, a.LastRows.View, inject.SubView((layers - 1) * bh, bh), dH);
        for (int layer = layers - 1; layer >= 0; layer--)
        {
            var wHh = model.View(stack.WeightHh[layer]);
            for (int t = s - 1; t >= 0; t--)
            {
                var dzNext = t + 1 < s ? dZ.SubView((t + 1) * bh, bh) : dZ.SubView(0, bh);
                k.RecurrentBackward(b, h, t + 1 < s, dzNext, wHh, dH.SubView(t * bh, bh), a.HiddenAt(layer, t + 1, h), dZ.SubView(t * bh, bh), lengths, t);
            }
            if (dh0.IsValid)
                k.Gemm(new GemmShape(b, h, h, false, false), 1f, dZ, wHh, 0f, dh0.SubView(layer * bh, bh)); // dh_0 = dz_0 · W_hh
            // dW_hh [H, H] = Σ_t dz_tᵀ h_{t−1}: one GEMM over all s·B positions (h_0 … h_{s−1}).
            k.Gemm(new GemmShape(h, h, p, true, false), 1f, dZ, a.Hidden[layer].View.SubView(0, ph), 0f, RnnModel.ViewOf(g, stack.WeightHh[layer]));
            k.ColumnSum(p, h, dZ, RnnModel.ViewOf(g, stack.BiasIh[layer]), RnnModel.ViewOf(g, stack.BiasHh[layer]));
            if (layer == 0)
            {
                k.EmbeddingBackward(h, v, a.TokenOffsets.View, a.TokenPositions.View, dZ, RnnModel.ViewOf(g, stack.WeightIh[0]));
                continue;
            }
            var below = Outputs(a, layer - 1, s, h);
            k.Gemm(new GemmShape(h, h, p, true, false), 1f, dZ, below, 0f, RnnModel.ViewOf(g, stack.WeightIh[layer])); // dW_ih = dZᵀ · H_below
            float beta = 0f;
            if (inject.IsValid)
            {
                k.LastStateBackward(p, b, h, a.LastRows.View, inject.SubView((layer - 1) * bh, bh), dH);
                beta = 1f; // the GEMM adds to the injected gradient
            }
            k.Gemm(new GemmShape(p, h, h, false, false), 1f, dZ, model.View(stack.WeightIh[layer]), beta, dH); // dH_below (+)= dZ · W_ih
        }
    }

    /// <summary>The per-token position lists of a window's inputs for the deterministic dW_ih scatter (host → device).</summary>
    private void UploadTokenPositions(Activations a, TokenWindow window)
    {
        int p = window.Positions;
        DeviceKernels.TokenPositions(window.Inputs.AsSpan(0, p), model.Layout.V, a.HostOffsets, a.HostPositions);
        k.Upload<int>(a.HostOffsets, a.TokenOffsets.View);
        k.Upload<int>(a.HostPositions.AsSpan(0, p), a.TokenPositions.View);
    }

    private static TokenWindow Source(TokenWindow window) =>
        window.Source ?? throw new ArgumentException("an encoder–decoder window needs its source window.", nameof(window));

    /// <summary>
    /// Runs the encoder over <paramref name="source"/> (its own activations) and puts each layer's
    /// last true state into <paramref name="decoder"/>'s initial state, h_0 of every decoder layer.
    /// </summary>
    private void Encode(TokenWindow source, Activations decoder, bool training)
    {
        encAct = Prepare(encAct, source, encoder: true);
        var e = encAct;
        if (training)
            UploadTokenPositions(e, source);
        source.ResetState = true;
        ForwardStack(e, model.Layout.Encoder!, source);
        UploadLastRows(e, source);
        int h = model.Layout.H;
        for (int layer = 0; layer < model.Layout.L; layer++)
            k.LastStateForward(source.Batch, h, e.LastRows.View, Outputs(e, layer, source.Steps, h), decoder.HiddenAt(layer, 0, h));
    }

    /// <summary>Row (length − 1)·B + b of each sequence's last true step (host → device).</summary>
    private void UploadLastRows(Activations a, TokenWindow window)
    {
        int b = window.Batch, s = window.Steps;
        for (int i = 0; i < b; i++)
        {
            int length = window.Lengths[i];
            if (length < 1 || length > s)
                throw new ArgumentOutOfRangeException(nameof(window), $"sequence {i} has length {length}; it must be between 1 and {s}.");
            a.HostRows[i] = (length - 1) * b + i;
        }
        k.Upload<int>(a.HostRows.AsSpan(0, b), a.LastRows.View);
    }

    /// <summary>The last step's h becomes the next window's h_0, without gradient (truncated BPTT).</summary>
    private void Carry(Activations a, int steps)
    {
        for (int layer = 0; layer < model.Layout.L; layer++)
            k.Copy(a.HiddenAt(layer, steps, model.Layout.H), a.HiddenAt(layer, 0, model.Layout.H));
    }

    /// <summary>
    /// Mean cross-entropy per predicted token of <paramref name="ids"/> as one stream batched like
    /// training (B, T from the arguments), from a zero state with the state carried across windows,
    /// without touching the training state or the gradients. Returns the mean and the token count.
    /// </summary>
    public (double Loss, long Tokens) Evaluate(int[] ids, int batch, int seqLen)
    {
        var data = new StreamBatcher(ids, batch, seqLen);
        return Evaluate(Enumerable.Range(0, data.WindowsPerEpoch).Select(_ => data.Next()));
    }

    /// <summary>
    /// Mean loss per counted target (tokens for a language model, labels for a classifier) over
    /// <paramref name="windows"/>, with a hidden state of its own (reset where a window says so),
    /// without touching the training state or the gradients. Returns the mean and the count.
    /// </summary>
    public (double Loss, long Count) Evaluate(IEnumerable<TokenWindow> windows)
    {
        ArgumentNullException.ThrowIfNull(windows);
        double sum = 0;
        long count = 0;
        Span<float> windowSum = stackalloc float[1];
        foreach (var window in windows)
        {
            evalAct = Prepare(evalAct, window);
            if (model.Config.EncoderDecoder)
                Encode(Source(window), evalAct, training: false);
            count += Forward(evalAct, window);
            Carry(evalAct, window.Steps);
            k.Download(evalAct.Scalars.View.SubView(Activations.LossSlot, 1), windowSum);
            sum += windowSum[0];
        }
        return (count > 0 ? sum / count : double.NaN, count);
    }

    /// <summary>
    /// Greedy decoding of an encoder–decoder: the encoder reads <paramref name="source"/>, then the
    /// decoder starts from <paramref name="bos"/> and feeds back its most likely token (never one of
    /// <paramref name="excluded"/>) until <paramref name="eos"/> or <paramref name="maxLength"/>
    /// tokens, all B sequences in step. Returns the tokens of the first <paramref name="count"/>
    /// sequences, without the end token. The training state is untouched.
    /// </summary>
    public List<int>[] Decode(TokenWindow source, int count, int bos, int eos, int maxLength, IReadOnlyCollection<int> excluded)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(excluded);
        if (!model.Config.EncoderDecoder)
            throw new InvalidOperationException("Decode needs an encoder–decoder model.");
        int b = source.Batch, v = model.Layout.V;
        if (count < 0 || count > b)
            throw new ArgumentOutOfRangeException(nameof(count), count, $"between 0 and the batch of {b}");
        var step = new TokenWindow(b, 1) { Steps = 1, ResetState = false, Source = source };
        evalAct = Prepare(evalAct, step);
        Encode(source, evalAct, training: false);
        var output = Enumerable.Range(0, count).Select(_ => new List<int>()).ToArray();
        var done = new bool[b];
        for (int i = count; i < b; i++)
            done[i] = true; // empty slots of a short last batch
        var previous = new int[b];
        Array.Fill(previous, bos);
        var logits = new float[b * v];
        Array.Fill(step.Targets, -1);
        for (int t = 0; t < maxLength && done.Contains(false); t++)
        {
            for (int i = 0; i < b; i++)
                step.Inputs[i] = done[i] ? -1 : previous[i];
            Forward(evalAct, step, withLoss: false);
            Carry(evalAct, 1);
            k.Download(evalAct.Logits.View.SubView(0, (long)b * v), logits);
            for (int i = 0; i < b; i++)
            {
                if (done[i])
                    continue;
                int best = -1;
                for (int c = 0; c < v; c++)
                {
                    if (!excluded.Contains(c) && (best < 0 || logits[i * v + c] > logits[i * v + best]))
                        best = c;
                }
                if (best == eos)
                {
                    done[i] = true;
                    continue;
                }
                output[i].Add(best);
                previous[i] = best;
            }
        }
        return output;
    }

    /// <summary>
    /// The raw decoder outputs of a classifier window, [B, C] row-major (softmax them for
    /// probabilities), from a zero state; the training state is untouched.
    /// </summary>
    public float[] ClassLogits(TokenWindow window)
    {
        if (!model.Config.IsClassifier)
            throw new InvalidOperationException("ClassLogits needs a classifier model.");
        window.ResetState = true;
        return Logits(window);
    }

    /// <summary>
    /// The raw output-layer values of a window without loss or gradients, with the evaluation state
    /// (reset where the window says so): [s·B, V] time-major for a language model or an
    /// encoder–decoder's decoder, [B, C] for a classifier. The training state is untouched.
    /// </summary>
    public float[] Logits(TokenWindow window)
    {
        ArgumentNullException.ThrowIfNull(window);
        evalAct = Prepare(evalAct, window);
        if (model.Config.EncoderDecoder)
            Encode(Source(window), evalAct, training: false);
        Forward(evalAct, window, withLoss: false);
        Carry(evalAct, window.Steps);
        var host = new float[model.Config.IsClassifier ? window.Batch * model.Config.Classes : window.Positions * model.Layout.Outputs];
        k.Download(evalAct.Logits.View, host);
        return host;
    }

    /// <summary>
    /// Forward pass of one window into <paramref name="a"/>: ids and targets up, every layer over
    /// time, logits, loss per row and its sum, dlogits (in place of the logits, scaled for the
    /// mean). Returns the number of counted (non-ignored) targets.
    /// </summary>
    private int Forward(Activations a, TokenWindow window, bool withLoss = true)
    {
        var layout = model.Layout;
        int v = layout.V, h = layout.H;
        int b = window.Batch, s = window.Steps, p = window.Positions;
        var targets = window.Targets.AsSpan(0, p);
        int counted = 0;
        foreach (int t in targets)
        {
            if (t >= v)
                throw new ArgumentOutOfRangeException(nameof(window), $"target id {t} is outside the vocabulary of {v}.");
            if (t >= 0)
                counted++;
        }
        ForwardStack(a, layout.Stack, window);
        k.Upload<int>(targets, a.Targets.View);
        var top = Outputs(a, layout.L - 1, s, h);
        if (!model.Config.IsClassifier)
        {
            var logits = a.Logits.View.SubView(0, (long)p * v);
            k.GemmBias(new GemmShape(p, v, h, false, true), top, model.View(layout.DecoderWeight), logits, model.View(layout.DecoderBias));
            if (!withLoss)
                return counted;
            k.SoftmaxCrossEntropy(p, v, counted > 0 ? 1f / counted : 0f, logits, a.Targets.View, a.RowLoss.View, logits); // logits now hold dlogits
            k.ReduceSum(p, false, a.RowLoss.View, a.Scalars.View, Activations.LossSlot);
            return counted;
        }

        // Many-to-one: the decoder reads each sequence's last true state (row (length − 1)·B + b).
        int c = model.Config.Classes;
        foreach (int label in window.Labels.AsSpan(0, b))
        {
            if (label >= c)
                throw new ArgumentOutOfRangeException(nameof(window), $"label {label} is outside the {c} classes.");
        }
        UploadLastRows(a, window);
        k.Upload<int>(window.Labels.AsSpan(0, b), a.Labels.View);
        var classLogits = a.Logits.View.SubView(0, (long)b * c);
        k.LastStateForward(b, h, a.LastRows.View, top, a.HLast.View);
        k.GemmBias(new GemmShape(b, c, h, false, true), a.HLast.View, model.View(layout.DecoderWeight), classLogits, model.View(layout.DecoderBias));
        if (!withLoss)
            return b;
        int labelled = 0;
        foreach (int label in window.Labels.AsSpan(0, b))
            labelled += label >= 0 ? 1 : 0;
        k.SoftmaxCrossEntropy(b, c, labelled > 0 ? 1f / labelled : 0f, classLogits, a.Labels.View, a.RowLoss.View, classLogits);
        k.ReduceSum(b, false, a.RowLoss.View, a.Scalars.View, Activations.LossSlot);
        return labelled;
    }

    /// <summary>
    /// One stack over a window: the ids up, then layer by layer the input term for all s steps at
    /// once (a gather for layer 0, one GEMM above) and the recurrence, one launch a step. The state
    /// starts from zero where the window says so (never for an encoder–decoder's decoder, whose h_0
    /// the encoder has set).
    /// </summary>
    private void ForwardStack(Activations a, RnnStack stack, TokenWindow window)
    {
        int v = model.Layout.V, h = model.Layout.H, layers = model.Layout.L;
        int b = window.Batch, s = window.Steps, p = window.Positions;
        if (window.ResetState && !(model.Config.EncoderDecoder && stack == model.Layout.Stack))
        {
            for (int layer = 0; layer < layers; layer++)
                k.Clear(a.HiddenAt(layer, 0, h));
        }
        var inputs = window.Inputs.AsSpan(0, p);
        foreach (int id in inputs)
        {
            if (id >= v)
                throw new ArgumentOutOfRangeException(nameof(window), $"input id {id} is outside the vocabulary of {v}."); // negative = padding: no input
        }
        k.Upload<int>(inputs, a.Ids.View);
        // A padded batch holds each sequence's state past its end: the recurrent steps read the lengths.
        var lengths = window.Padded ? a.Lengths.View : default;
        if (window.Padded)
            k.Upload<int>(window.Lengths.AsSpan(0, b), a.Lengths.View);
        var x = a.X.View.SubView(0, (long)p * h);
        for (int layer = 0; layer < layers; layer++)
        {
            var bIh = model.View(stack.BiasIh[layer]);
            var bHh = model.View(stack.BiasHh[layer]);
            if (layer == 0)
                k.EmbeddingForward(p, h, v, a.Ids.View, model.View(stack.WeightIh[0]), bIh, bHh, x);
            else
                k.GemmBias(new GemmShape(p, h, h, false, true), Outputs(a, layer - 1, s, h), model.View(stack.WeightIh[layer]), x, bIh, bHh);
            var wHh = model.View(stack.WeightHh[layer]);
            for (int t = 0; t < s; t++)
                k.RecurrentForward(b, h, a.HiddenAt(layer, t, h), wHh, x.SubView((long)t * b * h, (long)b * h), a.HiddenAt(layer, t + 1, h), lengths, t);
        }
    }

    /// <summary>The mean loss of the last <see cref="ComputeGradients"/> window (reads one float from the device).</summary>
    public float ReadLoss()
    {
        var a = act ?? throw new InvalidOperationException("no window has been run yet.");
        Span<float> sum = stackalloc float[1];
        k.Download(a.Scalars.View.SubView(Activations.LossSlot, 1), sum);
        return sum[0] * lossScale;
    }

    /// <summary>
    /// The mean loss and the global L2 norm of the gradients of the last <see cref="ComputeGradients"/>
    /// window in one 8-byte copy, so that a caller can refuse a NaN or infinite step before
    /// <see cref="ApplyUpdate"/> lets it reach the weights. The norm is infinite when Σ g² overflows.
    /// </summary>
    public (float Loss, float GradNorm) ReadLossAndNorm()
    {
        var a = act ?? throw new InvalidOperationException("no window has been run yet.");
        Span<float> both = stackalloc float[2];
        k.Download(a.Scalars.View.SubView(0, 2), both);
        return (both[Activations.LossSlot] * lossScale, MathF.Sqrt(both[Activations.NormSlot]));
    }

    /// <summary>Applies one optimizer update (with clipping) from the current <see cref="Gradients"/>.</summary>
    public void ApplyUpdate()
    {
        var a = act ?? throw new InvalidOperationException("no gradients have been computed yet.");
        var o = Optimizer;
        var p = model.Parameters;
        var g = gradients.View;
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

    /// <summary>Device bytes held by the parameters, gradients, optimizer slots and activations (checked against <see cref="TrainingMemory"/>).</summary>
    internal long DeviceBytes =>
        model.Parameters.LengthInBytes + gradients.LengthInBytes + slots.Sum(x => x.LengthInBytes) + (act?.Bytes ?? 0) + (evalAct?.Bytes ?? 0) + (encAct?.Bytes ?? 0);

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

    /// <summary>Sets the carried hidden state [B·H] of every layer for windows of B sequences and up to T steps (resume).</summary>
    public void SetState(int batch, int seqLen, IReadOnlyList<float[]> states)
    {
        ArgumentNullException.ThrowIfNull(states);
        if (states.Count != model.Layout.L)
            throw new ArgumentException($"{states.Count} layer states given; the model has {model.Layout.L} layers.", nameof(states));
        var window = new TokenWindow(batch, seqLen) { Steps = seqLen };
        act = Prepare(act, window);
        for (int layer = 0; layer < states.Count; layer++)
            k.Upload<float>(states[layer], act.HiddenAt(layer, 0, model.Layout.H));
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

    /// <summary>
    /// Activations fitting <paramref name="window"/>: allocated on the first window and re-allocated
    /// only for a larger shape (the carried state survives when B is unchanged).
    /// </summary>
    private Activations Prepare(Activations? current, TokenWindow window, bool encoder = false)
    {
        if (window.Steps < 1 || window.Steps > window.Capacity)
            throw new ArgumentException($"window holds {window.Steps} steps; it must be between 1 and {window.Capacity}.", nameof(window));
        int batch = window.Batch, capacity = window.Capacity;
        if (current is not null && current.Batch == batch && current.Capacity >= capacity)
            return current;
        var fresh = new Activations(model.Device.Accelerator, model.Layout, model.Config.IsClassifier, batch, capacity, encoder);
        if (current is not null)
        {
            if (current.Batch == batch)
            {
                for (int layer = 0; layer < model.Layout.L; layer++)
                    k.Copy(current.HiddenAt(layer, 0, model.Layout.H), fresh.HiddenAt(layer, 0, model.Layout.H));
            }
            current.Dispose();
        }
        return fresh;
    }

    /// <summary>Releases the activations, optimizer state and gradients (reverse order of creation).</summary>
    public void Dispose()
    {
        encAct?.Dispose();
        evalAct?.Dispose();
        act?.Dispose();
        for (int i = slots.Length - 1; i >= 0; i--)
            slots[i].Dispose();
        gradients.Dispose();
    }
}
