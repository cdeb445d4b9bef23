using GpuRnn.Kernels;
using ILGPU;

namespace GpuRnn;

/// <summary>
/// Gradients w.r.t. every layer's state at one end of a window, [L, B, H] each: h, and an LSTM's c
/// (an invalid view for other cells). The bridge of an encoder–decoder: the decoder's initial-state
/// gradients are what enters the encoder at each source's last true step.
/// </summary>
internal readonly record struct StateGradients(ArrayView<float> H, ArrayView<float> C)
{
    /// <summary>None.</summary>
    public static StateGradients None => default;

    /// <summary>True when there are any.</summary>
    public bool IsValid => H.IsValid;
}

/// <summary>
/// L layers of one cell run over the time steps of a window, forward and backward (DESIGN.md §3b): the
/// only code with a loop over t. Owns the activations of one stack for windows of B sequences and up to
/// T steps (allocated once; DESIGN.md §4): the input ids, each layer's states h_0 … h_T (and an LSTM's
/// c), the hoisted input term, the cell's saved activations, and, when built for training, the
/// gradients of the backward pass. The state at t = 0 is the carried-in state. Positions are
/// time-major, p = t·B + b.
/// </summary>
internal sealed class RecurrentStack
{
    private readonly Cell cell;
    private readonly bool encoder;
    private readonly int vocab, hidden, layers;
    private readonly ArrayView<int> ids;             // [T, B] input ids (negative: padding, no input)
    private readonly ArrayView<int> lengths;         // [B] true length of each padded sequence
    private readonly ArrayView<int> lastRows;        // [B] row (length − 1)·B + b of each sequence's last true step
    private readonly ArrayView<int> tokenOffsets;    // [V + 1] training: start of each token's positions
    private readonly ArrayView<int> tokenPositions;  // [T·B] training: positions sorted by token (the dW_ih scatter)
    private readonly ArrayView<float> x;             // [T, B, G] hoisted input term of the current layer
    private readonly ArrayView<float>[] states;      // [L][T + 1, B, H] h_0 … h_T
    private readonly ArrayView<float>[] cells;       // [L][T + 1, B, H] c_0 … c_T (LSTM; empty otherwise)
    private readonly ArrayView<float>[] saved;       // [L][T, B, S] saved activations (one shared set when not training)
    private readonly ArrayView<float> dH;            // [T, B, H] training: gradient w.r.t. the current layer's outputs
    private readonly ArrayView<float> dAx;           // [T, B, G] training: input-side pre-activation gradient
    private readonly ArrayView<float> dAh;           // [T, B, G] training: hh-side pre-activation gradient (GRU; else dAx)
    private readonly ArrayView<float> carry;         // [B, H] training: direct-path gradient between steps (GRU, LSTM)
    private readonly int[] hostOffsets, hostPositions, hostRows;

    /// <summary>Sizes (and, with an allocating <paramref name="buffers"/>, allocates) a stack's workspace.</summary>
    /// <param name="buffers">The owner of the buffers (or a counter).</param>
    /// <param name="config">V, H, L and the cell.</param>
    /// <param name="encoder">True for an encoder–decoder's encoder (<c>encoder.rnn.*</c>); else the stack under the output (<c>rnn.*</c> or <c>decoder.rnn.*</c>).</param>
    /// <param name="batch">B.</param>
    /// <param name="capacity">T, the most steps a window holds.</param>
    /// <param name="training">Whether the backward pass's buffers are needed.</param>
    public RecurrentStack(DeviceBuffers buffers, ModelConfig config, bool encoder, int batch, int capacity, bool training)
    {
        this.encoder = encoder;
        cell = new Cell(config.Cell, config.Hidden);
        vocab = config.Vocab;
        hidden = config.Hidden;
        layers = config.Layers;
        Batch = batch;
        Capacity = capacity;
        Training = training;
        long p = (long)batch * capacity, bh = (long)batch * hidden;
        int g = cell.Width, s = cell.SavedWidth;
        ids = buffers.Ints(p);
        lengths = buffers.Ints(batch);
        lastRows = buffers.Ints(batch);
        hostRows = buffers.HostInts(batch);
        x = buffers.Floats(p * g);
        states = new ArrayView<float>[layers];
        cells = new ArrayView<float>[cell.HasCellState ? layers : 0];
        for (int k = 0; k < layers; k++)
            states[k] = buffers.Floats((capacity + 1) * bh, zeroed: true);
        for (int k = 0; k < cells.Length; k++)
            cells[k] = buffers.Floats((capacity + 1) * bh, zeroed: true);
        saved = new ArrayView<float>[s == 0 ? 0 : layers];
        for (int k = 0; k < saved.Length; k++)
            saved[k] = k == 0 || training ? buffers.Floats(p * s) : saved[0]; // inference reads a layer's saved activations never again
        if (training)
        {
            tokenOffsets = buffers.Ints(vocab + 1);
            tokenPositions = buffers.Ints(p);
            hostOffsets = buffers.HostInts(vocab + 1);
            hostPositions = buffers.HostInts(p);
            dH = buffers.Floats(p * hidden);
            dAx = buffers.Floats(p * g);
            dAh = cell.SeparateHhGradient ? buffers.Floats(p * g) : dAx;
            carry = cell.HasCarry ? buffers.Floats(bh) : default;
        }
        else
        {
            hostOffsets = hostPositions = [];
        }
    }

    /// <summary>B.</summary>
    public int Batch { get; }

    /// <summary>T, the most steps a window may hold.</summary>
    public int Capacity { get; }

    /// <summary>True when built with the backward pass's buffers.</summary>
    public bool Training { get; }

    /// <summary>True when the state is (h, c) (LSTM).</summary>
    public bool HasCellState => cell.HasCellState;

    /// <summary>h_t of a layer, [B, H] (t = 0 is the carried-in state).</summary>
    public ArrayView<float> State(int layer, int t) => states[layer].SubView(t * (long)Batch * hidden, (long)Batch * hidden);

    /// <summary>c_t of an LSTM layer, [B, H]; an invalid view for other cells.</summary>
    public ArrayView<float> CellState(int layer, int t) => cells.Length == 0 ? default : cells[layer].SubView(t * (long)Batch * hidden, (long)Batch * hidden);

    /// <summary>A layer's outputs h_1 … h_s as one [s·B, H] block (the next layer's, a head's or the decoder's input).</summary>
    public ArrayView<float> Outputs(int layer, int steps) => states[layer].SubView((long)Batch * hidden, steps * (long)Batch * hidden);

    /// <summary>A layer's cell states c_1 … c_s as one [s·B, H] block (LSTM).</summary>
    public ArrayView<float> CellOutputs(int layer, int steps) => cells.Length == 0 ? default : cells[layer].SubView((long)Batch * hidden, steps * (long)Batch * hidden);

    /// <summary>The gradient w.r.t. the top layer's outputs, [s·B, H]: a head writes it before <see cref="Backward"/>.</summary>
    public ArrayView<float> TopGradient(int steps) => dH.SubView(0, steps * (long)Batch * hidden);

    /// <summary>[B] row (length − 1)·B + b of each sequence's last true step, after <see cref="UploadLastRows"/>.</summary>
    public ArrayView<int> LastRows => lastRows;

    /// <summary>
    /// Forward over <paramref name="window"/>: its ids (and lengths, for a padded batch) up, then layer
    /// by layer the hoisted input term for all s steps at once and the recurrence: one launch a step, or one for all steps on the fused path (<see cref="RnnModel.Recurrence"/>).
    /// The state starts from zero when <paramref name="fromZero"/>, else from the state at t = 0 (carried
    /// from the last window, or set by an encoder).
    /// </summary>
    public void Forward(RnnModel model, TokenWindow window, bool fromZero)
    {
        var k = model.Device.Kernels;
        int b = window.Batch, s = window.Steps, p = window.Positions;
        Require(window);
        if (fromZero)
            ClearState(k);
        var inputs = window.Inputs.AsSpan(0, p);
        foreach (int id in inputs)
        {
            if (id >= vocab)
                throw new ArgumentOutOfRangeException(nameof(window), $"input id {id} is outside the vocabulary of {vocab}."); // negative = padding: no input
        }
        k.Upload<int>(inputs, ids);
        if (Training)
        {
            // The per-token position lists for the deterministic dW_ih scatter, built where the ids already are.
            DeviceKernels.TokenPositions(inputs, vocab, hostOffsets, hostPositions);
            k.Upload<int>(hostOffsets, tokenOffsets);
            k.Upload<int>(hostPositions.AsSpan(0, p), tokenPositions);
        }
        // A padded batch holds each sequence's state past its end: the steps read the lengths.
        var held = window.Padded ? lengths : default;
        if (window.Padded)
            k.Upload<int>(window.Lengths.AsSpan(0, b), lengths);
        long bh = (long)b * hidden, bg = (long)b * cell.Width, bs = (long)b * cell.SavedWidth;
        var xs = x.SubView(0, p * (long)cell.Width);
        bool fused = model.RecurrencePath == Recurrence.Fused;
        var blocks = Blocks(model);
        for (int layer = 0; layer < layers; layer++)
        {
            var w = CellWeights.Of(model.Parameters, blocks[layer]);
            cell.InputTerm(k, p, vocab, layer == 0, ids, layer == 0 ? default : Outputs(layer - 1, s), w, xs);
            var keep = saved.Length == 0 ? default : saved[layer];
            if (fused)
            {
                cell.ForwardAll(k, b, s, w, states[layer].SubView(0, (s + 1) * bh), cells.Length == 0 ? default : cells[layer].SubView(0, (s + 1) * bh), xs,
                    keep.IsValid ? keep.SubView(0, s * bs) : default, held);
                continue;
            }
            for (int t = 0; t < s; t++)
            {
                cell.Forward(k, b, w, State(layer, t), CellState(layer, t), xs.SubView(t * bg, bg),
                    keep.IsValid ? keep.SubView(t * bs, bs) : default, State(layer, t + 1), CellState(layer, t + 1), held, t);
            }
        }
    }

    /// <summary>
    /// Backpropagation through time, top layer first, into the parameter gradients
    /// <paramref name="gradients"/> [P] (overwritten). On entry <see cref="TopGradient"/> holds the
    /// gradient w.r.t. the top layer's outputs, unless <paramref name="inject"/> is given: then each
    /// layer's state at each sequence's last true step also receives inject[layer] (h through the
    /// output gradient, an LSTM's c through the direct path; the encoder of an encoder–decoder, whose
    /// top layer gets nothing else unless <paramref name="topGiven"/>: then inject[top] adds to the
    /// <see cref="TopGradient"/> written before, the gradient an attention passes to the encoder's outputs).
    /// With <paramref name="initial"/>, the gradients w.r.t. each layer's initial state are written there.
    /// </summary>
    public void Backward(RnnModel model, ArrayView<float> gradients, TokenWindow window, StateGradients inject, StateGradients initial, bool topGiven = false)
    {
        if (!Training)
            throw new InvalidOperationException("this stack was built for inference: it has no gradient buffers.");
        var k = model.Device.Kernels;
        int b = window.Batch, s = window.Steps, p = window.Positions;
        long bh = (long)b * hidden, bg = (long)b * cell.Width, bs = (long)b * cell.SavedWidth;
        var dHs = dH.SubView(0, p * (long)hidden);
        var dAxs = dAx.SubView(0, p * (long)cell.Width);
        var dAhs = dAh.SubView(0, p * (long)cell.Width);
        var held = window.Padded ? lengths : default; // uploaded by the forward pass
        bool fused = model.RecurrencePath == Recurrence.Fused;
        if (inject.IsValid)
            k.LastStateBackward(p, b, hidden, lastRows, inject.H.SubView((layers - 1) * bh, bh), dHs, accumulate: topGiven);
        var blocks = Blocks(model);
        for (int layer = layers - 1; layer >= 0; layer--)
        {
            var w = CellWeights.Of(model.Parameters, blocks[layer]);
            var keep = saved.Length == 0 ? default : saved[layer];
            // An LSTM's c gets its injected gradient at the window's end through the direct path; held
            // steps pass it down to each sequence's last true step.
            var carryIn = inject.C.IsValid ? inject.C.SubView(layer * bh, bh) : default;
            if (fused)
            {
                cell.BackwardAll(k, b, s, w, dHs, carryIn, states[layer].SubView(0, (s + 1) * bh), cells.Length == 0 ? default : cells[layer].SubView(0, (s + 1) * bh),
                    keep.IsValid ? keep.SubView(0, s * bs) : default, dAxs, dAhs, carry, held);
            }
            for (int t = fused ? -1 : s - 1; t >= 0; t--)
            {
                bool hasNext = t + 1 < s;
                cell.Backward(k, b, hasNext, w, dAhs.SubView((hasNext ? t + 1 : 0) * bg, bg), dHs.SubView(t * bh, bh), hasNext ? carry : carryIn,
                    State(layer, t), State(layer, t + 1), CellState(layer, t), CellState(layer, t + 1), keep.IsValid ? keep.SubView(t * bs, bs) : default,
                    dAxs.SubView(t * bg, bg), dAhs.SubView(t * bg, bg), carry, held, t);
            }
            if (initial.IsValid)
                cell.InitialStateGradient(k, b, w, dAhs.SubView(0, bg), carry, initial.H.SubView(layer * bh, bh), initial.C.IsValid ? initial.C.SubView(layer * bh, bh) : default);
            float beta = 0f;
            if (layer > 0 && inject.IsValid)
            {
                k.LastStateBackward(p, b, hidden, lastRows, inject.H.SubView((layer - 1) * bh, bh), dHs);
                beta = 1f; // the GEMM into dH_below adds to the injected gradient
            }
            cell.ParameterGradients(k, p, vocab, layer == 0, w, CellWeights.Of(gradients, blocks[layer]), dAxs, dAhs,
                states[layer].SubView(0, p * (long)hidden), layer == 0 ? default : Outputs(layer - 1, s), tokenOffsets, tokenPositions, dHs, beta);
        }
    }

    /// <summary>Uploads the row of each sequence's last true step, (length − 1)·B + b, into <see cref="LastRows"/>.</summary>
    public void UploadLastRows(DeviceKernels k, TokenWindow window)
    {
        int b = window.Batch, s = window.Steps;
        for (int i = 0; i < b; i++)
        {
            int length = window.Lengths[i];
            if (length < 1 || length > s)
                throw new ArgumentOutOfRangeException(nameof(window), $"sequence {i} has length {length}; it must be between 1 and {s}.");
            hostRows[i] = (length - 1) * b + i;
        }
        k.Upload<int>(hostRows.AsSpan(0, b), lastRows);
    }

    /// <summary>The last step's state becomes the next window's initial state, without gradient (truncated BPTT).</summary>
    public void Carry(DeviceKernels k, int steps)
    {
        for (int layer = 0; layer < layers; layer++)
        {
            k.Copy(State(layer, steps), State(layer, 0));
            if (cells.Length > 0)
                k.Copy(CellState(layer, steps), CellState(layer, 0));
        }
    }

    /// <summary>Zeroes every layer's initial state.</summary>
    public void ClearState(DeviceKernels k)
    {
        for (int layer = 0; layer < layers; layer++)
        {
            k.Clear(State(layer, 0));
            if (cells.Length > 0)
                k.Clear(CellState(layer, 0));
        }
    }

    /// <summary>
    /// Reorders the sequences' initial states: sequence b takes the state sequence <paramref name="rows"/>[b] had (beam
    /// search: each hypothesis continues from its parent's). Through the host; for decoding, never the training step.
    /// </summary>
    public void GatherState(DeviceKernels k, IReadOnlyList<int> rows)
    {
        int bh = Batch * hidden;
        var before = new float[bh];
        var after = new float[bh];
        for (int layer = 0; layer < layers; layer++)
        {
            foreach (var state in cells.Length > 0 ? new[] { State(layer, 0), CellState(layer, 0) } : [State(layer, 0)])
            {
                k.Download(state, before);
                for (int b = 0; b < Batch; b++)
                    before.AsSpan(rows[b] * hidden, hidden).CopyTo(after.AsSpan(b * hidden, hidden));
                k.Upload<float>(after, state);
            }
        }
    }

    /// <summary>Copies every layer's initial state (h and c) from <paramref name="other"/>, a stack of the same batch.</summary>
    public void CopyStateFrom(DeviceKernels k, RecurrentStack other)
    {
        for (int layer = 0; layer < layers; layer++)
        {
            k.Copy(other.State(layer, 0), State(layer, 0));
            if (cells.Length > 0)
                k.Copy(other.CellState(layer, 0), CellState(layer, 0));
        }
    }

    /// <summary>This stack's parameter blocks in <paramref name="model"/>.</summary>
    private IReadOnlyList<CellParameters> Blocks(RnnModel model) => (encoder ? model.Layout.Encoder! : model.Layout.Stack).Layers;

    private void Require(TokenWindow window)
    {
        if (window.Batch != Batch || window.Steps < 1 || window.Steps > Capacity)
            throw new ArgumentException($"a window of B={window.Batch}, {window.Steps} steps does not fit a stack of B={Batch}, T={Capacity}.", nameof(window));
    }
}
