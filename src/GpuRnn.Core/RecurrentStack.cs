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
/// A term added to the first layer's input at each step that reads that layer's own state before the step (Bahdanau
/// attention, <see cref="AdditiveAttention"/>): it makes the first layer run step by step on either recurrence path.
/// </summary>
internal interface IStepInput
{
    /// <summary>Step t: adds to the step's input term <paramref name="x"/> [B, G] from the first layer's state h_t <paramref name="state"/> [B, H].</summary>
    void Forward(DeviceKernels k, int t, ArrayView<float> state, ArrayView<float> x);

    /// <summary>Step t's backward from the step's input-side pre-activation gradient <paramref name="dx"/> [B, G]: adds the gradient w.r.t. h_t to <paramref name="dState"/> [B, H].</summary>
    void Backward(DeviceKernels k, int t, ArrayView<float> dx, ArrayView<float> dState);
}

/// <summary>
/// L layers of one cell run over the time steps of a window, forward and backward (DESIGN.md §3b): the
/// only code with a loop over t. Owns the activations of one stack for windows of B sequences and up to
/// T steps (allocated once; DESIGN.md §4): the input ids, each layer's states h_0 … h_T (and an LSTM's
/// c), the hoisted input term, the cell's saved activations, and, when built for training, the
/// gradients of the backward pass. The state at t = 0 is the carried-in state. Positions are
/// time-major, p = t·B + b.
/// <para>
/// A bidirectional stack (DESIGN.md §3d) runs each layer twice: direction 0 over the window as it is,
/// direction 1 (<c>*_reverse</c>) over every sequence reversed in place (row t of sequence b is its token
/// length_b − 1 − t; padding stays at the end), with the same held-row masking, so direction 1's states
/// are in its own (reversed) time order and its last true step has the same row as the forward one's.
/// Between layers both directions' outputs are joined side by side, [P, 2H], once in each order: the
/// input of the next layer's forward and of its reverse direction.
/// </para>
/// </summary>
internal sealed class RecurrentStack
{
    private readonly Cell cell;
    private readonly bool encoder;
    private readonly int vocab, hidden, layers, directions;
    private readonly ArrayView<int>[] ids;            // [D][T, B] input ids per direction (negative: padding, no input)
    private readonly ArrayView<int> lengths;          // [B] true length of each padded sequence
    private readonly ArrayView<int> lastRows;         // [B] row (length − 1)·B + b of each sequence's last true step
    private readonly ArrayView<int> reversal;         // [T·B] bidirectional: row map between the two time orders (DeviceKernels.ReversalMap)
    private readonly ArrayView<int>[] tokenOffsets;   // [D][V + 1] training: start of each token's positions
    private readonly ArrayView<int>[] tokenPositions; // [D][T·B] training: positions sorted by token (the dW_ih scatter)
    private readonly ArrayView<float> x;              // [T, B, G] hoisted input term of the current layer and direction
    private readonly ArrayView<float>[][] states;     // [D][L][T + 1, B, H] h_0 … h_T
    private readonly ArrayView<float>[][] cells;      // [D][L][T + 1, B, H] c_0 … c_T (LSTM; empty otherwise)
    private readonly ArrayView<float>[][] saved;      // [D][L][T, B, S] saved activations (one shared set when not training)
    private readonly ArrayView<float>[][] joined;     // [D][L − 1][T, B, 2H] bidirectional: [forward; reverse] outputs of a layer in direction d's order
    private readonly ArrayView<float> memory;         // [T, B, H] bidirectional encoder: top outputs summed over the directions
    private readonly ArrayView<float>[] dH;           // [D][T, B, H] training: gradient w.r.t. the current layer's outputs, in each direction's order
    private readonly ArrayView<float>[] dJoined;      // [D][T, B, 2H] training, bidirectional, L > 1: gradient w.r.t. joined[d] of the layer below
    private readonly ArrayView<float> dAx;            // [T, B, G] training: input-side pre-activation gradient
    private readonly ArrayView<float> dAh;            // [T, B, G] training: hh-side pre-activation gradient (GRU; else dAx)
    private readonly ArrayView<float> carry;          // [B, H] training: direct-path gradient between steps (GRU, LSTM)
    private readonly ArrayView<float>[][] dropped;    // [D][L or L − 1][T, B, H] training with dropout: each dropped layer's outputs as the layer above (or the head) reads them
    private readonly float dropout;                   // p of the training stack; 0 when not training
    private readonly int[][] hostOffsets, hostPositions;
    private readonly int[] hostRows, hostReversal, hostReversed;

    /// <summary>Sizes (and, with an allocating <paramref name="buffers"/>, allocates) a stack's workspace.</summary>
    /// <param name="buffers">The owner of the buffers (or a counter).</param>
    /// <param name="config">V, H, L, the cell and whether the stack is bidirectional.</param>
    /// <param name="encoder">True for an encoder–decoder's encoder (<c>encoder.rnn.*</c>); else the stack under the output (<c>rnn.*</c> or <c>decoder.rnn.*</c>).</param>
    /// <param name="batch">B.</param>
    /// <param name="capacity">T, the most steps a window holds.</param>
    /// <param name="training">Whether the backward pass's buffers are needed.</param>
    public RecurrentStack(DeviceBuffers buffers, ModelConfig config, bool encoder, int batch, int capacity, bool training)
    {
        this.encoder = encoder;
        // Bidirectional: the classifier's stack or the encoder; an encoder–decoder's decoder runs forward only.
        directions = config.EncoderDecoder && !encoder ? 1 : config.Directions;
        cell = new Cell(config.Cell, config.Hidden, directions * config.Hidden);
        vocab = config.Vocab;
        hidden = config.Hidden;
        layers = config.Layers;
        Batch = batch;
        Capacity = capacity;
        Training = training;
        long p = (long)batch * capacity, bh = (long)batch * hidden;
        int g = cell.Width, s = cell.SavedWidth;
        ids = new ArrayView<int>[directions];
        for (int d = 0; d < directions; d++)
            ids[d] = buffers.Ints(p);
        lengths = buffers.Ints(batch);
        lastRows = buffers.Ints(batch);
        hostRows = buffers.HostInts(batch);
        bool bidirectional = directions == 2;
        reversal = bidirectional ? buffers.Ints(p) : default;
        hostReversal = bidirectional ? buffers.HostInts(p) : [];
        hostReversed = bidirectional ? buffers.HostInts(p) : [];
        x = buffers.Floats(p * g);
        states = new ArrayView<float>[directions][];
        cells = new ArrayView<float>[directions][];
        saved = new ArrayView<float>[directions][];
        joined = new ArrayView<float>[directions][];
        for (int d = 0; d < directions; d++)
        {
            states[d] = new ArrayView<float>[layers];
            cells[d] = new ArrayView<float>[cell.HasCellState ? layers : 0];
            for (int k = 0; k < layers; k++)
                states[d][k] = buffers.Floats((capacity + 1) * bh, zeroed: true);
            for (int k = 0; k < cells[d].Length; k++)
                cells[d][k] = buffers.Floats((capacity + 1) * bh, zeroed: true);
            saved[d] = new ArrayView<float>[s == 0 ? 0 : layers];
            for (int k = 0; k < saved[d].Length; k++)
                saved[d][k] = (d == 0 && k == 0) || training ? buffers.Floats(p * s) : saved[0][0]; // inference reads a layer's saved activations never again
            joined[d] = new ArrayView<float>[bidirectional ? layers - 1 : 0];
            for (int k = 0; k < joined[d].Length; k++)
                joined[d][k] = buffers.Floats(p * 2 * hidden);
        }
        memory = bidirectional && encoder ? buffers.Floats(p * hidden) : default;
        tokenOffsets = new ArrayView<int>[training ? directions : 0];
        tokenPositions = new ArrayView<int>[tokenOffsets.Length];
        hostOffsets = new int[tokenOffsets.Length][];
        hostPositions = new int[tokenOffsets.Length][];
        dH = new ArrayView<float>[tokenOffsets.Length];
        dJoined = new ArrayView<float>[training && bidirectional && layers > 1 ? directions : 0];
        for (int d = 0; d < tokenOffsets.Length; d++)
        {
            tokenOffsets[d] = buffers.Ints(vocab + 1);
            tokenPositions[d] = buffers.Ints(p);
            hostOffsets[d] = buffers.HostInts(vocab + 1);
            hostPositions[d] = buffers.HostInts(p);
            dH[d] = buffers.Floats(p * hidden);
        }
        for (int d = 0; d < dJoined.Length; d++)
            dJoined[d] = buffers.Floats(p * 2 * hidden);
        if (training)
        {
            dAx = buffers.Floats(p * g);
            dAh = cell.SeparateHhGradient ? buffers.Floats(p * g) : dAx;
            carry = cell.HasCarry ? buffers.Floats(bh) : default;
        }
        // Dropout (training only): every layer's outputs, in each direction, but an encoder's top layer's, whose outputs
        // feed no layer or head (only the bridge and attention, which read them undropped).
        dropout = training ? config.Dropout : 0f;
        dropped = new ArrayView<float>[directions][];
        for (int d = 0; d < directions; d++)
        {
            dropped[d] = new ArrayView<float>[dropout > 0f ? (encoder ? layers - 1 : layers) : 0];
            for (int k = 0; k < dropped[d].Length; k++)
                dropped[d][k] = buffers.Floats(p * hidden);
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

    /// <summary>1, or 2 for a bidirectional stack.</summary>
    public int Directions => directions;

    /// <summary>A term added to the first layer's input at every step from its own state (a decoder's additive attention); null: none.</summary>
    public IStepInput? StepInput { get; set; }

    /// <summary>The first layer's states h_0 … h_{s−1} (the states each step read), [s·B, H].</summary>
    public ArrayView<float> FirstLayerInputStates(int steps) => states[0][0].SubView(0, steps * (long)Batch * hidden);

    /// <summary>After <see cref="Backward"/>: the first layer's input-side pre-activation gradients, [s·B, G].</summary>
    public ArrayView<float> FirstLayerInputGradient(int steps) => dAx.SubView(0, steps * (long)Batch * cell.Width);

    /// <summary>h_t of a layer of the forward direction, [B, H] (t = 0 is the carried-in state).</summary>
    public ArrayView<float> State(int layer, int t) => State(0, layer, t);

    /// <summary>c_t of an LSTM layer of the forward direction, [B, H]; an invalid view for other cells.</summary>
    public ArrayView<float> CellState(int layer, int t) => CellState(0, layer, t);

    /// <summary>A layer's forward outputs h_1 … h_s as one [s·B, H] block (the next layer's, a head's or the decoder's input).</summary>
    public ArrayView<float> Outputs(int layer, int steps) => Outputs(0, layer, steps);

    /// <summary>A layer's cell states c_1 … c_s as one [s·B, H] block (LSTM).</summary>
    public ArrayView<float> CellOutputs(int layer, int steps) => CellOutputs(0, layer, steps);

    /// <summary>Direction <paramref name="direction"/>'s outputs of a layer as one [s·B, H] block, in that direction's time order.</summary>
    public ArrayView<float> Outputs(int direction, int layer, int steps) => states[direction][layer].SubView((long)Batch * hidden, steps * (long)Batch * hidden);

    /// <summary>Direction <paramref name="direction"/>'s cell states c_1 … c_s of an LSTM layer, [s·B, H]; an invalid view for other cells.</summary>
    public ArrayView<float> CellOutputs(int direction, int layer, int steps) =>
        cells[direction].Length == 0 ? default : cells[direction][layer].SubView((long)Batch * hidden, steps * (long)Batch * hidden);

    /// <summary>
    /// What the layer above (or, for the top layer, the head) reads of direction <paramref name="direction"/>'s outputs of a
    /// layer, [s·B, H] in that direction's time order: the outputs after dropout when the stack drops this layer in training,
    /// else <see cref="Outputs(int, int, int)"/> themselves.
    /// </summary>
    public ArrayView<float> Fed(int direction, int layer, int steps) =>
        layer < dropped[direction].Length ? dropped[direction][layer].SubView(0, steps * (long)Batch * hidden) : Outputs(direction, layer, steps);

    /// <summary>The forward direction's <see cref="Fed(int, int, int)"/>.</summary>
    public ArrayView<float> Fed(int layer, int steps) => Fed(0, layer, steps);

    /// <summary>The seed and the update number that key this step's dropout masks (with the site: stack, direction and layer). Set by the trainer before each forward.</summary>
    public (int Seed, long Step) DropoutKey { get; set; }

    /// <summary>Direction <paramref name="direction"/>'s top-layer outputs as the head reads them (after dropout), [s·B, H] in that direction's time order.</summary>
    public ArrayView<float> TopLayer(int direction, int steps) => Fed(direction, layers - 1, steps);

    /// <summary>
    /// The top layer's outputs in time order, [s·B, H] (an encoder's attention memory): the forward outputs, or for a
    /// bidirectional encoder the sum of both directions' (the reverse direction's brought back to time order; padding
    /// rows hold the forward state only). Computed by this call for a bidirectional encoder (2 launches).
    /// </summary>
    public ArrayView<float> TopOutputs(DeviceKernels k, int steps)
    {
        var top = Outputs(layers - 1, steps);
        if (directions == 1)
            return top;
        if (!memory.IsValid)
            throw new InvalidOperationException("only a bidirectional encoder sums its top outputs.");
        int rows = steps * Batch;
        var sum = memory.SubView(0, (long)rows * hidden);
        k.Copy(top, sum);
        k.GatherRows(rows, hidden, reversal, new RowBlock(Outputs(1, layers - 1, steps), hidden, 0), accumulate: true, new RowBlock(sum, hidden, 0));
        return sum;
    }

    /// <summary>
    /// Backward of <see cref="TopOutputs"/>: with the gradient w.r.t. the time-ordered top outputs written into
    /// <see cref="TopGradient(int)"/> (the forward direction's, which reads them in time order), a bidirectional stack's reverse
    /// direction gets the same gradient in its own order (1 launch: the sum's two terms each get all of it; padding rows,
    /// which attention gives no gradient, get none). Nothing for a one-direction stack.
    /// </summary>
    public void TopOutputsBackward(DeviceKernels k, int steps)
    {
        if (directions == 1)
            return;
        int rows = steps * Batch;
        k.GatherRows(rows, hidden, reversal, new RowBlock(TopGradient(0, steps), hidden, 0), accumulate: false, new RowBlock(TopGradient(1, steps), hidden, 0));
    }

    /// <summary>The gradient w.r.t. the top layer's forward outputs, [s·B, H]: a head writes it before <see cref="Backward"/>.</summary>
    public ArrayView<float> TopGradient(int steps) => TopGradient(0, steps);

    /// <summary>The gradient w.r.t. direction <paramref name="direction"/>'s top outputs, [s·B, H] in that direction's time order.</summary>
    public ArrayView<float> TopGradient(int direction, int steps) => dH[direction].SubView(0, steps * (long)Batch * hidden);

    /// <summary>[B] row (length − 1)·B + b of each sequence's last true step, after <see cref="UploadLastRows"/>: the same row in both directions.</summary>
    public ArrayView<int> LastRows => lastRows;

    /// <summary>
    /// Forward over <paramref name="window"/>: its ids (and lengths, for a padded batch) up, then layer
    /// by layer and direction by direction the hoisted input term for all s steps at once and the recurrence: one launch a step, or one for all steps on the fused path (<see cref="RnnModel.Recurrence"/>).
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
        k.Upload<int>(inputs, ids[0]);
        if (directions == 2)
            UploadReversal(k, window);
        for (int d = 0; d < tokenOffsets.Length; d++)
        {
            // The per-token position lists for the deterministic dW_ih scatter, built where the ids already are.
            DeviceKernels.TokenPositions(d == 0 ? inputs : hostReversed.AsSpan(0, p), vocab, hostOffsets[d], hostPositions[d]);
            k.Upload<int>(hostOffsets[d], tokenOffsets[d]);
            k.Upload<int>(hostPositions[d].AsSpan(0, p), tokenPositions[d]);
        }
        // A padded batch holds each sequence's state past its end: the steps read the lengths.
        var held = window.Padded ? lengths : default;
        if (window.Padded)
            k.Upload<int>(window.Lengths.AsSpan(0, b), lengths);
        long bh = (long)b * hidden, bg = (long)b * cell.Width, bs = (long)b * cell.SavedWidth;
        var xs = x.SubView(0, p * (long)cell.Width);
        bool fused = model.RecurrencePath == Recurrence.Fused;
        for (int layer = 0; layer < layers; layer++)
        {
            for (int d = 0; d < directions; d++)
            {
                var w = CellWeights.Of(model.Parameters, Blocks(model, d)[layer]);
                cell.InputTerm(k, p, vocab, layer == 0, ids[d], layer == 0 ? default : Below(d, layer - 1, s), w, xs);
                var keep = saved[d].Length == 0 ? default : saved[d][layer];
                var hs = states[d][layer];
                var cs = cells[d].Length == 0 ? default : cells[d][layer];
                var stepInput = layer == 0 ? StepInput : null;
                if (fused && stepInput is null)
                {
                    cell.ForwardAll(k, b, s, w, hs.SubView(0, (s + 1) * bh), cs.IsValid ? cs.SubView(0, (s + 1) * bh) : default, xs,
                        keep.IsValid ? keep.SubView(0, s * bs) : default, held);
                    continue;
                }
                for (int t = 0; t < s; t++)
                {
                    stepInput?.Forward(k, t, State(d, layer, t), xs.SubView(t * bg, bg));
                    cell.Forward(k, b, w, State(d, layer, t), CellState(d, layer, t), xs.SubView(t * bg, bg),
                        keep.IsValid ? keep.SubView(t * bs, bs) : default, State(d, layer, t + 1), CellState(d, layer, t + 1), held, t);
                }
            }
            for (int d = 0; d < directions; d++)
                DropOut(k, d, layer, p, backward: false); // for the layer above, or before the head
            if (directions == 2 && layer < layers - 1)
                Join(k, layer, p);
        }
    }

    /// <summary>
    /// Backpropagation through time, top layer first, into the parameter gradients
    /// <paramref name="gradients"/> [P] (overwritten). On entry <see cref="TopGradient(int, int)"/> holds the
    /// gradient w.r.t. each direction's top outputs, unless <paramref name="inject"/> is given: then each
    /// layer's state at each sequence's last true step also receives inject[layer] (h through the
    /// output gradient, an LSTM's c through the direct path; the encoder of an encoder–decoder, whose
    /// top layer gets nothing else unless <paramref name="topGiven"/>: then inject[top] adds to the
    /// <see cref="TopGradient(int, int)"/> written before, the gradient an attention passes to the encoder's outputs), in both
    /// directions of a bidirectional stack (whose final states are summed). With <paramref name="initial"/> (a forward-only
    /// stack), the gradients w.r.t. each layer's initial state are written there.
    /// </summary>
    public void Backward(RnnModel model, ArrayView<float> gradients, TokenWindow window, StateGradients inject, StateGradients initial, bool topGiven = false)
    {
        if (!Training)
            throw new InvalidOperationException("this stack was built for inference: it has no gradient buffers.");
        if (initial.IsValid && directions == 2)
            throw new InvalidOperationException("a bidirectional stack starts from zero: it has no initial-state gradients.");
        var k = model.Device.Kernels;
        int b = window.Batch, s = window.Steps, p = window.Positions;
        long bh = (long)b * hidden, bg = (long)b * cell.Width, bs = (long)b * cell.SavedWidth;
        var dAxs = dAx.SubView(0, p * (long)cell.Width);
        var dAhs = dAh.SubView(0, p * (long)cell.Width);
        var held = window.Padded ? lengths : default; // uploaded by the forward pass
        bool fused = model.RecurrencePath == Recurrence.Fused;
        for (int d = 0; d < directions; d++)
        {
            DropOut(k, d, layers - 1, p, backward: true); // the head's gradient is w.r.t. the dropped top outputs
            if (inject.IsValid)
                k.LastStateBackward(p, b, hidden, lastRows, inject.H.SubView((layers - 1) * bh, bh), TopGradient(d, s), accumulate: topGiven);
        }
        for (int layer = layers - 1; layer >= 0; layer--)
        {
            for (int d = 0; d < directions; d++)
            {
                var dHs = TopGradient(d, s);
                var w = CellWeights.Of(model.Parameters, Blocks(model, d)[layer]);
                var keep = saved[d].Length == 0 ? default : saved[d][layer];
                var hs = states[d][layer];
                var cs = cells[d].Length == 0 ? default : cells[d][layer];
                // An LSTM's c gets its injected gradient at the window's end through the direct path; held
                // steps pass it down to each sequence's last true step.
                var carryIn = inject.C.IsValid ? inject.C.SubView(layer * bh, bh) : default;
                var stepInput = layer == 0 ? StepInput : null;
                if (stepInput is not null && !initial.IsValid)
                    throw new InvalidOperationException("a step input reads the initial state: its backward needs the initial-state gradients.");
                bool allSteps = fused && stepInput is null;
                if (allSteps)
                {
                    cell.BackwardAll(k, b, s, w, dHs, carryIn, hs.SubView(0, (s + 1) * bh), cs.IsValid ? cs.SubView(0, (s + 1) * bh) : default,
                        keep.IsValid ? keep.SubView(0, s * bs) : default, dAxs, dAhs, carry, held);
                }
                for (int t = allSteps ? -1 : s - 1; t >= 0; t--)
                {
                    bool hasNext = t + 1 < s;
                    cell.Backward(k, b, hasNext, w, dAhs.SubView((hasNext ? t + 1 : 0) * bg, bg), dHs.SubView(t * bh, bh), hasNext ? carry : carryIn,
                        State(d, layer, t), State(d, layer, t + 1), CellState(d, layer, t), CellState(d, layer, t + 1), keep.IsValid ? keep.SubView(t * bs, bs) : default,
                        dAxs.SubView(t * bg, bg), dAhs.SubView(t * bg, bg), carry, held, t);
                    if (t > 0)
                        stepInput?.Backward(k, t, dAxs.SubView(t * bg, bg), dHs.SubView((t - 1) * bh, bh)); // h_t is step t − 1's output
                }
                if (initial.IsValid)
                    cell.InitialStateGradient(k, b, w, dAhs.SubView(0, bg), carry, initial.H.SubView(layer * bh, bh), initial.C.IsValid ? initial.C.SubView(layer * bh, bh) : default);
                stepInput?.Backward(k, 0, dAxs.SubView(0, bg), initial.H.SubView(layer * bh, bh)); // step 0 read the initial state
                // Into the layer below: a one-direction stack writes dH_below (w.r.t. what that layer fed this one) over this
                // layer's (spent) dH; a bidirectional one writes d[joined] and splits it after both directions.
                var dBelow = directions == 2 ? (layer > 0 ? dJoined[d].SubView(0, p * 2L * hidden) : default) : dHs;
                cell.ParameterGradients(k, p, vocab, layer == 0, w, CellWeights.Of(gradients, Blocks(model, d)[layer]), dAxs, dAhs,
                    hs.SubView(0, p * (long)hidden), layer == 0 ? default : Below(d, layer - 1, s), TokenOffsets(d), TokenPositions(d), dBelow, 0f);
            }
            if (layer == 0)
                continue;
            if (directions == 2)
                Split(k, b, p);
            for (int d = 0; d < directions; d++)
            {
                DropOut(k, d, layer - 1, p, backward: true); // dH_below was w.r.t. the dropped outputs
                if (inject.IsValid)
                    k.LastStateBackward(p, b, hidden, lastRows, new RowBlock(inject.H.SubView((layer - 1) * bh, bh), hidden, 0), TopGradient(d, s), accumulate: true); // the undropped last state's own gradient
            }
        }
    }

    /// <summary>
    /// Bidirectional, forward: layer <paramref name="layer"/>'s outputs side by side, [forward; reverse], in each direction's
    /// time order: joined[0] = [h_fwd; reversed h_rev], joined[1] = [reversed h_fwd; h_rev] (4 launches).
    /// </summary>
    private void Join(DeviceKernels k, int layer, int rows)
    {
        int s = rows / Batch;
        for (int d = 0; d < 2; d++)
        {
            var into = joined[d][layer];
            for (int from = 0; from < 2; from++)
                k.GatherRows(rows, hidden, from == d ? default : reversal, new RowBlock(Fed(from, layer, s), hidden, 0), accumulate: false, new RowBlock(into, 2 * hidden, from * hidden));
        }
    }

    /// <summary>
    /// Bidirectional, backward of <see cref="Join"/>: the gradient w.r.t. what each direction of the layer below fed this
    /// layer, from both d[joined] (each half read in the direction's own order, the other's reversed; 4 launches).
    /// </summary>
    private void Split(DeviceKernels k, int batch, int rows)
    {
        int s = rows / batch;
        for (int d = 0; d < 2; d++)
        {
            var into = new RowBlock(TopGradient(d, s), hidden, 0);
            k.GatherRows(rows, hidden, default, new RowBlock(dJoined[d].SubView(0, rows * 2L * hidden), 2 * hidden, d * hidden), accumulate: false, into);
            k.GatherRows(rows, hidden, reversal, new RowBlock(dJoined[1 - d].SubView(0, rows * 2L * hidden), 2 * hidden, d * hidden), accumulate: true, into);
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
        for (int d = 0; d < directions; d++)
        {
            for (int layer = 0; layer < layers; layer++)
            {
                k.Copy(State(d, layer, steps), State(d, layer, 0));
                if (cells[d].Length > 0)
                    k.Copy(CellState(d, layer, steps), CellState(d, layer, 0));
            }
        }
    }

    /// <summary>Zeroes every layer's initial state.</summary>
    public void ClearState(DeviceKernels k)
    {
        for (int d = 0; d < directions; d++)
        {
            for (int layer = 0; layer < layers; layer++)
            {
                k.Clear(State(d, layer, 0));
                if (cells[d].Length > 0)
                    k.Clear(CellState(d, layer, 0));
            }
        }
    }

    /// <summary>
    /// Reorders the sequences' initial states: sequence b takes the state sequence <paramref name="rows"/>[b] had (beam
    /// search: each hypothesis continues from its parent's). Through the host; for decoding, never the training step.
    /// </summary>
    public void GatherState(DeviceKernels k, IReadOnlyList<int> rows)
    {
        if (directions == 2)
            throw new InvalidOperationException("only a forward-only stack (a decoder) continues from reordered states.");
        int bh = Batch * hidden;
        var before = new float[bh];
        var after = new float[bh];
        for (int layer = 0; layer < layers; layer++)
        {
            foreach (var state in cells[0].Length > 0 ? new[] { State(layer, 0), CellState(layer, 0) } : [State(layer, 0)])
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
        for (int d = 0; d < directions; d++)
        {
            for (int layer = 0; layer < layers; layer++)
            {
                k.Copy(other.State(d, layer, 0), State(d, layer, 0));
                if (cells[d].Length > 0)
                    k.Copy(other.CellState(d, layer, 0), CellState(d, layer, 0));
            }
        }
    }

    private ArrayView<float> State(int direction, int layer, int t) => states[direction][layer].SubView(t * (long)Batch * hidden, (long)Batch * hidden);

    private ArrayView<float> CellState(int direction, int layer, int t) =>
        cells[direction].Length == 0 ? default : cells[direction][layer].SubView(t * (long)Batch * hidden, (long)Batch * hidden);

    /// <summary>The input of direction <paramref name="direction"/>'s layer above <paramref name="layer"/>: its outputs [P, H], or the joined [P, 2H] of a bidirectional stack.</summary>
    private ArrayView<float> Below(int direction, int layer, int steps) =>
        directions == 1 ? Fed(layer, steps) : joined[direction][layer].SubView(0, steps * (long)Batch * 2 * hidden);

    private ArrayView<int> TokenOffsets(int direction) => tokenOffsets[direction];

    private ArrayView<int> TokenPositions(int direction) => tokenPositions[direction];

    /// <summary>Bidirectional: the reversal map and the reversed ids of <paramref name="window"/>, built on the host and uploaded.</summary>
    private void UploadReversal(DeviceKernels k, TokenWindow window)
    {
        int b = window.Batch, s = window.Steps, p = window.Positions;
        DeviceKernels.ReversalMap(window.Padded ? window.Lengths.AsSpan(0, b) : [], b, s, hostReversal);
        for (int q = 0; q < p; q++)
            hostReversed[q] = hostReversal[q] >= 0 ? window.Inputs[hostReversal[q]] : -1;
        k.Upload<int>(hostReversal.AsSpan(0, p), reversal);
        k.Upload<int>(hostReversed.AsSpan(0, p), ids[1]);
    }

    /// <summary>
    /// Dropout of direction <paramref name="direction"/>'s outputs of <paramref name="layer"/> (DESIGN.md §3c), one launch when this
    /// stack drops that layer, nothing otherwise: forward, its outputs into <see cref="Fed(int, int, int)"/>; backward, the gradient
    /// in that direction's dH (w.r.t. the dropped outputs) in place into the gradient w.r.t. the outputs, by the same mask (keyed by
    /// <see cref="DropoutKey"/>, the stack, the direction and the layer).
    /// </summary>
    private void DropOut(DeviceKernels k, int direction, int layer, int positions, bool backward)
    {
        if (layer >= dropped[direction].Length)
            return;
        int n = positions * hidden;
        var mask = DropoutMask.Of(dropout, DropoutKey.Seed, DropoutKey.Step, DropoutSite(encoder, layer, direction));
        if (backward)
            k.DropoutBackward(n, mask, dH[direction].SubView(0, n), dH[direction].SubView(0, n));
        else
            k.DropoutForward(n, mask, Outputs(direction, layer, positions / Batch), dropped[direction][layer].SubView(0, n));
    }

    /// <summary>The site of a layer's dropout mask in the hash key: the stack (encoder 1 &lt;&lt; 16, else 0), the direction (reverse 1 &lt;&lt; 8) and the layer.</summary>
    internal static int DropoutSite(bool encoder, int layer, int direction = 0) => (encoder ? 1 << 16 : 0) + (direction << 8) + layer;

    /// <summary>This stack's parameter blocks of direction <paramref name="direction"/> in <paramref name="model"/>.</summary>
    private IReadOnlyList<CellParameters> Blocks(RnnModel model, int direction) => (encoder ? model.Layout.Encoder! : model.Layout.Stack).Of(direction);

    private void Require(TokenWindow window)
    {
        if (window.Batch != Batch || window.Steps < 1 || window.Steps > Capacity)
            throw new ArgumentException($"a window of B={window.Batch}, {window.Steps} steps does not fit a stack of B={Batch}, T={Capacity}.", nameof(window));
    }
}
