using GpuRnn.Kernels;
using ILGPU;

namespace GpuRnn;

/// <summary>
/// A model's computation over windows of B sequences and up to T steps: its stacks and its head
/// composed, with the workspace they own (one <see cref="DeviceBuffers"/>; DESIGN.md §4). The forward
/// runs the parts in order; the backward calls their backward halves in explicit reverse order
/// (DESIGN.md §3b). Built for training (with the gradient buffers) or for inference (without), and
/// sized by the same constructor whether it allocates or only counts (<see cref="Measure"/>).
/// </summary>
internal abstract class Network : IDisposable
{
    /// <summary>Slots of <see cref="Scalars"/>.</summary>
    public const int LossSlot = 0, NormSlot = 1;

    private readonly DeviceBuffers buffers;

    protected Network(DeviceBuffers buffers, int batch, int capacity, int sourceCapacity)
    {
        this.buffers = buffers;
        Batch = batch;
        Capacity = capacity;
        SourceCapacity = sourceCapacity;
        Scalars = buffers.Floats(2);
    }

    /// <summary>B.</summary>
    public int Batch { get; }

    /// <summary>T: the most steps of a window.</summary>
    public int Capacity { get; }

    /// <summary>The most steps of an encoder–decoder's source window (0 otherwise).</summary>
    public int SourceCapacity { get; }

    /// <summary>[2]: the loss sum of the last window with loss, and Σ g² of the last backward.</summary>
    public ArrayView<float> Scalars { get; }

    /// <summary>Device bytes of the workspace.</summary>
    public long Bytes => buffers.Bytes;

    /// <summary>The stack whose state runs on from window to window (the decoder's of an encoder–decoder).</summary>
    public abstract RecurrentStack Stack { get; }

    /// <summary>The raw outputs of the last forward: [s·B, V] time-major, or [B, C] for a classifier (dlogits after a forward with loss).</summary>
    public abstract ArrayView<float> Logits { get; }

    /// <summary>
    /// Forward over <paramref name="window"/>; with <paramref name="withLoss"/> the loss sum goes to
    /// <see cref="Scalars"/> and dlogits replace the logits. Returns the number of counted targets.
    /// </summary>
    public abstract int Forward(RnnModel model, TokenWindow window, bool withLoss);

    /// <summary>Backward of the last forward (with loss) into <paramref name="gradients"/> [P], overwritten.</summary>
    public abstract void Backward(RnnModel model, ArrayView<float> gradients, TokenWindow window);

    /// <summary>Keys the dropout masks of the next forward and backward (training with dropout; see <see cref="RecurrentStack.DropoutKey"/>).</summary>
    public virtual void KeyDropout(int seed, long step) => Stack.DropoutKey = (seed, step);

    /// <summary>The last step's state becomes the next window's initial state (truncated BPTT).</summary>
    public void Carry(DeviceKernels k, int steps) => Stack.Carry(k, steps);

    /// <summary>A network of <paramref name="config"/>'s kind over the given buffers.</summary>
    public static Network Create(DeviceBuffers buffers, ModelConfig config, int batch, int capacity, int sourceCapacity, bool training) =>
        config.EncoderDecoder ? new EncoderDecoderNetwork(buffers, config, batch, capacity, sourceCapacity, training)
        : config.IsClassifier ? new ClassifierNetwork(buffers, config, batch, capacity, training)
        : new LanguageModelNetwork(buffers, config, batch, capacity, training);

    /// <summary>The device bytes a network of these sizes holds, from the constructor that allocates them (nothing is allocated).</summary>
    public static long Measure(ModelConfig config, int batch, int capacity, int sourceCapacity, bool training)
    {
        using var counter = DeviceBuffers.Counting();
        Create(counter, config, batch, capacity, sourceCapacity, training);
        return counter.Bytes;
    }

    /// <summary>
    /// A network fitting <paramref name="window"/>: <paramref name="current"/> when it does, else a new
    /// one of the window's sizes (the carried state survives when B is unchanged).
    /// </summary>
    public static Network Fit(Network? current, RnnModel model, TokenWindow window, bool training)
    {
        if (window.Steps < 1 || window.Steps > window.Capacity)
            throw new ArgumentException($"window holds {window.Steps} steps; it must be between 1 and {window.Capacity}.", nameof(window));
        int source = 0;
        if (model.Config.EncoderDecoder)
            source = (window.Source ?? throw new ArgumentException("an encoder–decoder window needs its source window.", nameof(window))).Capacity;
        if (current is not null && current.Batch == window.Batch && current.Capacity >= window.Capacity && current.SourceCapacity >= source)
            return current;
        var buffers = new DeviceBuffers(model.Device.Accelerator);
        var fresh = Create(buffers, model.Config, window.Batch, Math.Max(window.Capacity, current?.Capacity ?? 0), Math.Max(source, current?.SourceCapacity ?? 0), training);
        if (current is not null)
        {
            if (current.Batch == window.Batch)
                fresh.Stack.CopyStateFrom(model.Device.Kernels, current.Stack);
            current.Dispose();
        }
        return fresh;
    }

    /// <summary>Frees the workspace.</summary>
    public void Dispose() => buffers.Dispose();
}

/// <summary>One stack under a head: the forward runs the stack then the head, the backward the head's backward then the stack's.</summary>
internal abstract class SingleStackNetwork : Network
{
    private readonly RecurrentStack stack;
    private readonly int layers;

    protected SingleStackNetwork(DeviceBuffers buffers, ModelConfig config, int batch, int capacity, bool training)
        : base(buffers, batch, capacity, 0)
    {
        layers = config.Layers;
        stack = new RecurrentStack(buffers, config, encoder: false, batch, capacity, training);
    }

    public sealed override RecurrentStack Stack => stack;

    public sealed override int Forward(RnnModel model, TokenWindow window, bool withLoss)
    {
        stack.Forward(model, window, fromZero: window.ResetState);
        return HeadForward(model, window, stack.Fed(layers - 1, window.Steps), withLoss);
    }

    public sealed override void Backward(RnnModel model, ArrayView<float> gradients, TokenWindow window)
    {
        int s = window.Steps;
        HeadBackward(model, gradients, window, stack.Fed(layers - 1, s), stack.TopGradient(s));
        stack.Backward(model, gradients, window, inject: StateGradients.None, initial: StateGradients.None);
    }

    /// <summary>The head over the top layer's outputs <paramref name="top"/> [s·B, H]; returns the counted targets.</summary>
    protected abstract int HeadForward(RnnModel model, TokenWindow window, ArrayView<float> top, bool withLoss);

    /// <summary>The head's backward: parameter gradients, and the gradient w.r.t. the top layer's outputs into <paramref name="dTop"/>.</summary>
    protected abstract void HeadBackward(RnnModel model, ArrayView<float> gradients, TokenWindow window, ArrayView<float> top, ArrayView<float> dTop);
}

/// <summary>Many-to-many language model: a stack and the output head at every step.</summary>
internal sealed class LanguageModelNetwork(DeviceBuffers buffers, ModelConfig config, int batch, int capacity, bool training)
    : SingleStackNetwork(buffers, config, batch, capacity, training)
{
    private readonly OutputHead head = new(buffers, config, batch, capacity);

    public override ArrayView<float> Logits => head.Logits;

    protected override int HeadForward(RnnModel model, TokenWindow window, ArrayView<float> top, bool withLoss) =>
        head.Forward(model, window, top, withLoss, Scalars);

    protected override void HeadBackward(RnnModel model, ArrayView<float> gradients, TokenWindow window, ArrayView<float> top, ArrayView<float> dTop) =>
        head.Backward(model, gradients, window, top, dTop);
}

/// <summary>Many-to-one classifier: a stack, then the classifier head on each sequence's last true state.</summary>
internal sealed class ClassifierNetwork(DeviceBuffers buffers, ModelConfig config, int batch, int capacity, bool training)
    : SingleStackNetwork(buffers, config, batch, capacity, training)
{
    private readonly ClassifierHead head = new(buffers, config, batch, training);

    public override ArrayView<float> Logits => head.Logits;

    protected override int HeadForward(RnnModel model, TokenWindow window, ArrayView<float> top, bool withLoss) =>
        head.Forward(model, window, Stack, withLoss, Scalars);

    protected override void HeadBackward(RnnModel model, ArrayView<float> gradients, TokenWindow window, ArrayView<float> top, ArrayView<float> dTop) =>
        head.Backward(model, gradients, window, Stack);
}

/// <summary>
/// Encoder–decoder: the encoder stack reads the source; each layer's last true state starts the
/// same layer of the decoder stack, which runs teacher-forced under the output head. With Luong attention, the
/// output head reads the attentional state h̃ of <see cref="LuongAttention"/> over the encoder's top-layer outputs
/// instead of the decoder's; with Bahdanau's (<see cref="AdditiveAttention"/>) the context enters each step of the
/// decoder's first layer. Either way the encoder's top layer gets the attention's gradient at every source step.
/// </summary>
internal sealed class EncoderDecoderNetwork : Network
{
    private readonly RecurrentStack encoder, decoder;
    private readonly OutputHead head;
    private readonly LuongAttention? attention;
    private readonly AdditiveAttention? additive;
    private readonly StateGradients bridge; // [L, B, H] training: gradients w.r.t. each decoder layer's initial h (and an LSTM's c)
    private readonly int layers, hidden;
    private ArrayView<float> memory; // [S'·B, H] with attention: the encoder's top outputs (summed over a bidirectional encoder's directions), set by Encode

    public EncoderDecoderNetwork(DeviceBuffers buffers, ModelConfig config, int batch, int capacity, int sourceCapacity, bool training)
        : base(buffers, batch, capacity, sourceCapacity)
    {
        layers = config.Layers;
        hidden = config.Hidden;
        encoder = new RecurrentStack(buffers, config, encoder: true, batch, sourceCapacity, training);
        decoder = new RecurrentStack(buffers, config, encoder: false, batch, capacity, training);
        head = new OutputHead(buffers, config, batch, capacity);
        attention = config.Attention is AttentionKind.Dot or AttentionKind.General ? new LuongAttention(buffers, config, batch, capacity, sourceCapacity, training) : null;
        additive = config.Attention == AttentionKind.Additive ? new AdditiveAttention(buffers, config, batch, capacity, sourceCapacity, training) : null;
        decoder.StepInput = additive;
        long lbh = (long)layers * batch * config.Hidden;
        bridge = training ? new StateGradients(buffers.Floats(lbh), decoder.HasCellState ? buffers.Floats(lbh) : default) : StateGradients.None;
    }

    public override RecurrentStack Stack => decoder;

    public override void KeyDropout(int seed, long step) => encoder.DropoutKey = decoder.DropoutKey = (seed, step);

    public override ArrayView<float> Logits => head.Logits;

    /// <summary>The attention of the last <see cref="Decode"/>: its weights [s, B, S'] (row t·B + b) and S'; null without attention.</summary>
    public (ArrayView<float> Weights, int SourceSteps)? AttentionWeights =>
        attention is not null ? (attention.Weights, attention.SourceSteps) : additive is not null ? (additive.Weights, additive.SourceSteps) : null;

    /// <summary>
    /// Runs the encoder over <paramref name="source"/> from zero and puts each layer's last true state into the decoder's
    /// initial state; a bidirectional encoder's two final states (forward after the last token, reverse after the first) are summed.
    /// With attention, the memory: the encoder's top outputs in time order (a bidirectional encoder's summed over the directions).
    /// </summary>
    public void Encode(RnnModel model, TokenWindow source)
    {
        var k = model.Device.Kernels;
        if (source.Batch != Batch)
            throw new ArgumentException($"the source window has B={source.Batch}; the decoder's has B={Batch}.", nameof(source));
        encoder.Forward(model, source, fromZero: true);
        encoder.UploadLastRows(k, source);
        int b = source.Batch;
        if (attention is not null || additive is not null)
            memory = encoder.TopOutputs(k, source.Steps);
        attention?.SetSource(k, source);
        additive?.Prepare(model, source, memory);
        for (int layer = 0; layer < layers; layer++)
        {
            for (int d = 0; d < encoder.Directions; d++)
            {
                k.LastStateForward(b, hidden, encoder.LastRows, encoder.Outputs(d, layer, source.Steps), accumulate: d > 0, new RowBlock(decoder.State(layer, 0), hidden, 0));
                if (encoder.HasCellState)
                    k.LastStateForward(b, hidden, encoder.LastRows, encoder.CellOutputs(d, layer, source.Steps), accumulate: d > 0, new RowBlock(decoder.CellState(layer, 0), hidden, 0));
            }
        }
    }

    /// <summary>The decoder and the head over <paramref name="window"/>, from the decoder's current state (the encoder's, or the last step's).</summary>
    public int Decode(RnnModel model, TokenWindow window, bool withLoss)
    {
        decoder.Forward(model, window, fromZero: false);
        return head.Forward(model, window, HeadInput(model, window), withLoss, Scalars);
    }

    /// <summary>What the output head reads: h̃ of the attention over the encoder's outputs, or the decoder's top-layer outputs.</summary>
    private ArrayView<float> HeadInput(RnnModel model, TokenWindow window)
    {
        var top = decoder.Fed(layers - 1, window.Steps);
        return attention is null ? top : attention.Forward(model, window.Batch, window.Steps, top, memory);
    }

    public override int Forward(RnnModel model, TokenWindow window, bool withLoss)
    {
        Encode(model, Source(window));
        return Decode(model, window, withLoss);
    }

    public override void Backward(RnnModel model, ArrayView<float> gradients, TokenWindow window)
    {
        int s = window.Steps;
        var top = decoder.Fed(layers - 1, s);
        if (attention is null)
        {
            head.Backward(model, gradients, window, top, decoder.TopGradient(s));
        }
        else
        {
            // h̃ is still in the attention's workspace from the forward; the attention then writes dH_dec and dM.
            head.Backward(model, gradients, window, attention.Forwarded(window.Positions), attention.StateGradient(window.Positions));
            attention.Backward(model, gradients, window.Batch, s, top, memory, decoder.TopGradient(s), encoder.TopGradient(attention.SourceSteps));
            encoder.TopOutputsBackward(model.Device.Kernels, attention.SourceSteps); // a bidirectional encoder's memory is the sum of both directions
        }
        // The decoder's initial states are the encoder's last true states: their gradients
        // (dh_0, and an LSTM's dc_0, per layer) enter the encoder at each source's last step,
        // added under attention to the gradient of every source step's output.
        decoder.Backward(model, gradients, window, inject: StateGradients.None, initial: bridge);
        if (additive is not null)
        {
            // The decoder's steps have left dq and de per step; the first layer's states and dx are still there.
            additive.Backward(model, gradients, s, decoder.FirstLayerInputStates(s), decoder.FirstLayerInputGradient(s), memory, encoder.TopGradient(additive.SourceSteps));
            encoder.TopOutputsBackward(model.Device.Kernels, additive.SourceSteps);
        }
        encoder.Backward(model, gradients, Source(window), inject: bridge, initial: StateGradients.None, topGiven: attention is not null || additive is not null);
    }

    private static TokenWindow Source(TokenWindow window) =>
        window.Source ?? throw new ArgumentException("an encoder–decoder window needs its source window.", nameof(window));
}
