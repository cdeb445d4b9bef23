using GpuRnn.Kernels;
using ILGPU;

namespace GpuRnn;

/// <summary>The linear decoder and loss that both heads end in: logits = X·W_decᵀ + b_dec over R rows.</summary>
internal static class LinearLoss
{
    /// <summary>Softmax cross-entropy of logits [R, N] against targets [R]: the loss sum into scalars[loss slot], dlogits (scaled for the mean over <paramref name="counted"/>) in place of the logits.</summary>
    public static void Forward(DeviceKernels k, int rows, int columns, int counted, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> rowLoss, ArrayView<float> scalars)
    {
        k.SoftmaxCrossEntropy(rows, columns, counted > 0 ? 1f / counted : 0f, logits, targets, rowLoss, logits);
        k.ReduceSum(rows, false, rowLoss, scalars, Network.LossSlot);
    }

    /// <summary>From dlogits [R, N] and the decoder's input X [R, H]: dX = dlogits·W_dec, dW_dec = dlogitsᵀ·X, db_dec = colsum dlogits.</summary>
    public static void Backward(RnnModel model, ArrayView<float> gradients, int rows, ArrayView<float> dLogits, ArrayView<float> input, ArrayView<float> dInput)
    {
        var k = model.Device.Kernels;
        var (weight, bias) = (model.Layout.DecoderWeight, model.Layout.DecoderBias);
        int columns = weight.Shape[0], hidden = weight.Shape[1];
        var db = RnnModel.ViewOf(gradients, bias);
        k.Gemm(new GemmShape(rows, hidden, columns, transA: false, transB: false), 1f, dLogits, model.View(weight), 0f, dInput);                 // dX [R, H] = dlogits · W_dec
        k.Gemm(new GemmShape(columns, hidden, rows, transA: true, transB: false), 1f, dLogits, input, 0f, RnnModel.ViewOf(gradients, weight)); // dW_dec [N, H] = dlogitsᵀ · X
        k.ColumnSum(rows, columns, dLogits, db, db);
    }
}

/// <summary>
/// The output layer of a language model (and of an encoder–decoder's decoder): logits = H·W_decᵀ + b_dec
/// at every position, then softmax cross-entropy and its gradient fused (DESIGN.md §3 steps 3–4). Owns
/// the targets, the logits (overwritten by dlogits) and the per-row loss of windows of up to T·B positions.
/// </summary>
internal sealed class OutputHead
{
    private readonly int outputs, hidden;
    private readonly ArrayView<int> targets;   // [T·B] (negative: ignored)
    private readonly ArrayView<float> logits;  // [T·B, V], dlogits after a forward with loss
    private readonly ArrayView<float> rowLoss; // [T·B]

    public OutputHead(DeviceBuffers buffers, ModelConfig config, int batch, int capacity)
    {
        outputs = config.Vocab;
        hidden = config.Hidden;
        long p = (long)batch * capacity;
        targets = buffers.Ints(p);
        logits = buffers.Floats(p * outputs);
        rowLoss = buffers.Floats(p);
    }

    /// <summary>The logits (or, after a forward with loss, dlogits) [s·B, V].</summary>
    public ArrayView<float> Logits => logits;

    /// <summary>
    /// Logits of every position of <paramref name="top"/> [P, H]; with <paramref name="withLoss"/> also the
    /// loss sum into scalars[loss slot] and dlogits (scaled for the mean) in place of the logits.
    /// Returns the number of counted (non-ignored) targets.
    /// </summary>
    public int Forward(RnnModel model, TokenWindow window, ArrayView<float> top, bool withLoss, ArrayView<float> scalars)
    {
        var k = model.Device.Kernels;
        var (weight, bias) = (model.Layout.DecoderWeight, model.Layout.DecoderBias);
        int p = window.Positions;
        var ts = window.Targets.AsSpan(0, p);
        int counted = 0;
        foreach (int t in ts)
        {
            if (t >= outputs)
                throw new ArgumentOutOfRangeException(nameof(window), $"target id {t} is outside the vocabulary of {outputs}.");
            if (t >= 0)
                counted++;
        }
        k.Upload<int>(ts, targets);
        var l = logits.SubView(0, (long)p * outputs);
        k.GemmBias(new GemmShape(p, outputs, hidden, transA: false, transB: true), top, model.View(weight), l, model.View(bias));
        if (!withLoss)
            return counted;
        LinearLoss.Forward(k, p, outputs, counted, l, targets, rowLoss, scalars); // the logits now hold dlogits
        return counted;
    }

    /// <summary>From dlogits: dTop [P, H] = dlogits·W_dec, dW_dec = dlogitsᵀ·H_top, db_dec = colsum dlogits.</summary>
    public void Backward(RnnModel model, ArrayView<float> gradients, TokenWindow window, ArrayView<float> top, ArrayView<float> dTop)
    {
        int p = window.Positions;
        LinearLoss.Backward(model, gradients, p, logits.SubView(0, (long)p * outputs), top, dTop);
    }
}

/// <summary>
/// The many-to-one head of a classifier: the linear decoder reads each sequence's last true state
/// (row (length − 1)·B + b of the top layer), then softmax cross-entropy over the C classes. A
/// bidirectional stack's head reads [forward; reverse] final states side by side, [B, 2H] (the reverse
/// direction's final state is its state after reading the first token: the same row in its own order).
/// </summary>
internal sealed class ClassifierHead
{
    private readonly int classes, hidden, directions;
    private readonly ArrayView<int> labels;    // [B]
    private readonly ArrayView<float> hLast;   // [B, D·H] last true state of the top layer, per direction side by side
    private readonly ArrayView<float> dLast;   // [B, D·H] its gradient (training)
    private readonly ArrayView<float> logits;  // [B, C], dlogits after a forward with loss
    private readonly ArrayView<float> rowLoss; // [B]

    public ClassifierHead(DeviceBuffers buffers, ModelConfig config, int batch, bool training)
    {
        classes = config.Classes;
        hidden = config.Hidden;
        directions = config.Directions;
        labels = buffers.Ints(batch);
        hLast = buffers.Floats((long)batch * directions * hidden);
        dLast = training ? buffers.Floats((long)batch * directions * hidden) : default;
        logits = buffers.Floats((long)batch * classes);
        rowLoss = buffers.Floats(batch);
    }

    /// <summary>The class logits (or dlogits) [B, C].</summary>
    public ArrayView<float> Logits => logits;

    /// <summary>Class logits from the last true states of <paramref name="stack"/>'s top layer; with loss as <see cref="OutputHead.Forward"/>. Returns the labelled sequences (B without loss).</summary>
    public int Forward(RnnModel model, TokenWindow window, RecurrentStack stack, bool withLoss, ArrayView<float> scalars)
    {
        var k = model.Device.Kernels;
        var (weight, bias) = (model.Layout.DecoderWeight, model.Layout.DecoderBias);
        int b = window.Batch;
        var ls = window.Labels.AsSpan(0, b);
        foreach (int label in ls)
        {
            if (label >= classes)
                throw new ArgumentOutOfRangeException(nameof(window), $"label {label} is outside the {classes} classes.");
        }
        stack.UploadLastRows(k, window);
        k.Upload<int>(ls, labels);
        var l = logits.SubView(0, (long)b * classes);
        int width = directions * hidden;
        for (int d = 0; d < directions; d++)
            k.LastStateForward(b, hidden, stack.LastRows, stack.TopLayer(d, window.Steps), accumulate: false, new RowBlock(hLast, width, d * hidden));
        k.GemmBias(new GemmShape(b, classes, width, transA: false, transB: true), hLast, model.View(weight), l, model.View(bias));
        if (!withLoss)
            return b;
        int labelled = 0;
        foreach (int label in ls)
            labelled += label >= 0 ? 1 : 0;
        LinearLoss.Forward(k, b, classes, labelled, l, labels, rowLoss, scalars);
        return labelled;
    }

    /// <summary>dW_dec = dlogitsᵀ·h_last, db_dec = colsum dlogits; the gradient enters the stack's top layer at each sequence's last true step only.</summary>
    public void Backward(RnnModel model, ArrayView<float> gradients, TokenWindow window, RecurrentStack stack)
    {
        int b = window.Batch, width = directions * hidden;
        LinearLoss.Backward(model, gradients, b, logits.SubView(0, (long)b * classes), hLast.SubView(0, (long)b * width), dLast.SubView(0, (long)b * width));
        for (int d = 0; d < directions; d++)
            model.Device.Kernels.LastStateBackward(window.Positions, b, hidden, stack.LastRows, new RowBlock(dLast, width, d * hidden), stack.TopGradient(d, window.Steps));
    }
}
