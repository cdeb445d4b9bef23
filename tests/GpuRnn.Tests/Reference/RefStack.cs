using GpuRnn.Kernels;

namespace GpuRnn.Tests.Reference;

/// <summary>
/// The states of one direction of one layer over its own steps j = 0 … n − 1 (the reverse direction's step j reads
/// token n − 1 − j): <c>H[j]</c>, <c>C[j]</c> [H] (index 0 = the initial state; C zeros unless LSTM), and per step the
/// two pre-activations <c>Ax[j] = W_ih x + b_ih</c>, <c>Ah[j] = W_hh h' + b_hh</c> [G] (null for a held step).
/// </summary>
public sealed record RefLayerRun(double[][] H, double[][] C, double[]?[] Ax, double[]?[] Ah);

/// <summary>
/// The states of one <see cref="RefStack.Forward"/> pass: per layer k and time index t (0 = the initial state),
/// <c>H[k][t]</c>, <c>C[k][t]</c> [H] (C zeros unless LSTM), and per step t the two pre-activations
/// <c>Ax[k][t] = W_ih x + b_ih</c>, <c>Ah[k][t] = W_hh h' + b_hh</c> [G] (null for a held step). A bidirectional
/// stack's reverse direction is in <see cref="Reverse"/>, per layer, in its own step order.
/// </summary>
public sealed record RefStackRun(int[] Inputs, int Length, RefLayerRun[] Forward, RefLayerRun[]? Reverse)
{
    /// <summary>Dropout factors (0 or 1/(1 − p)) [H] of the forward direction's layer k output at step t as the layer above or the head reads it; null (or a null result): none.</summary>
    public Func<int, int, double[]?>? Drop { get; init; }

    /// <summary>As <see cref="Drop"/> for the reverse direction, by its own step j (the step that read token n − 1 − j).</summary>
    public Func<int, int, double[]?>? DropReverse { get; init; }

    /// <summary>Layer k's forward output at step t (time index t + 1) as the layer above or the head reads it: h ⊙ the dropout factors.</summary>
    public double[] Output(int k, int t) => RefStack.Dropped(Drop, k, t, Forward[k].H[t + 1]);

    /// <summary>Layer k's reverse output at time t (its state after reading tokens n − 1 … t) as the layer above or the head reads it.</summary>
    public double[] ReverseOutput(int k, int t) => RefStack.Dropped(DropReverse, k, Inputs.Length - 1 - t, Reverse![k].H[Inputs.Length - t]);

    /// <summary>Forward h_t per layer.</summary>
    public double[][][] H => [.. Forward.Select(r => r.H)];

    /// <summary>Forward c_t per layer.</summary>
    public double[][][] C => [.. Forward.Select(r => r.C)];

    /// <summary>Layer k's state after the last step (a held sequence's true last state).</summary>
    public double[] FinalH(int k) => Forward[k].H[^1];

    /// <summary>Layer k's cell state after the last step (zeros unless LSTM).</summary>
    public double[] FinalC(int k) => Forward[k].C[^1];

    /// <summary>Layer k's reverse direction's state after its last step, i.e. after reading the first token.</summary>
    public double[] ReverseFinalH(int k) => Reverse![k].H[^1];

    /// <summary>Layer k's reverse direction's cell state after reading the first token (zeros unless LSTM).</summary>
    public double[] ReverseFinalC(int k) => Reverse![k].C[^1];

    /// <summary>The top layer's h_t, t = 0 … n − 1 (time index t + 1), as the head reads it (after dropout).</summary>
    public double[] TopOutput(int t) => Output(Forward.Length - 1, t);

    /// <summary>The top layer's reverse output at time t: its state after reading tokens n − 1 … t, as the head reads it (after dropout).</summary>
    public double[] ReverseTopOutput(int t) => ReverseOutput(Forward.Length - 1, t);
}

/// <summary>
/// One stack of L layers of one cell, for one sequence, plain loops in double: forward from given (or zero)
/// initial states, and backpropagation through time from gradients on the top layer's outputs and/or on each
/// layer's final (h, c). The cell is a <see cref="RefCell"/>; this type holds everything else (input terms,
/// W_hh, the time loop, the parameter gradients), so it is the same for Elman, GRU and LSTM. A sequence may be
/// padded: steps t ≥ length hold the state (h_t = h_{t−1}, c_t = c_{t−1}, DESIGN.md §6), so the final state
/// is the state after the last true token, and a gradient on it flows back through the held steps unchanged.
/// Parameters by PyTorch name with a prefix (<c>rnn.</c>, <c>encoder.rnn.</c>, <c>decoder.rnn.</c>).
/// Shared by the language-model, many-to-one and encoder–decoder references.
/// <para>
/// Bidirectional (PyTorch's <c>bidirectional=True</c>, unpadded sequences only): each layer also runs a reverse
/// direction (<c>*_l{k}_reverse</c>) from zero over tokens n − 1 … 0; the layer above reads
/// [forward h_t; reverse h_t] (2H) at each time t, and a gradient on a layer's final state reaches both directions'
/// final states (the encoder sums them).
/// </para>
/// </summary>
public sealed class RefStack(CellKind cell, string prefix, int vocab, int hidden, int layers, bool bidirectional = false)
{
    private readonly RefCell cell = RefCell.For(cell);

    /// <summary>The cell of every layer.</summary>
    public CellKind Cell => cell.Kind;

    /// <summary>
    /// Runs the stack over <paramref name="seq"/> (token ids; a negative id is a padding token with no input)
    /// from h0, c0 (per layer [H]; null = zeros); steps from <paramref name="length"/> on (default: none) hold.
    /// With <paramref name="drop"/> (and <paramref name="dropReverse"/> for the reverse direction, by its own step), layer k's
    /// output at step t is multiplied by drop(k, t) [H] (when not null) where the layer above and the head read it (dropout);
    /// the recurrence and the final states use the undropped h. With <paramref name="stepInput"/> (additive attention),
    /// stepInput(t, h_t) [G] is added to the first layer's input term of step t, h_t the state that step reads.
    /// </summary>
    public RefStackRun Forward(Dictionary<string, double[]> p, int[] seq, double[][]? h0 = null, double[][]? c0 = null, int? length = null,
        Func<int, int, double[]?>? drop = null, Func<int, int, double[]?>? dropReverse = null, Func<int, double[], double[]>? stepInput = null)
    {
        int n = seq.Length, len = length ?? n;
        if (bidirectional && (len != n || h0 is not null || c0 is not null))
            throw new ArgumentException("the bidirectional reference runs unpadded sequences from zero states.");
        var forward = new RefLayerRun[layers];
        var reverse = bidirectional ? new RefLayerRun[layers] : null;
        int[] reversed = [.. seq.Reverse()];
        var run = new RefStackRun(seq, len, forward, reverse) { Drop = drop, DropReverse = dropReverse };
        for (int k = 0; k < layers; k++)
        {
            var below = k == 0 ? null : Enumerable.Range(0, n).Select(t => Input(run, k - 1, t)).ToArray();
            forward[k] = LayerForward(p, k, "", seq, below, len, h0?[k], c0?[k], k == 0 ? stepInput : null);
            if (reverse is not null)
                reverse[k] = LayerForward(p, k, "_reverse", reversed, below?.Reverse().ToArray(), n, null, null);
        }
        return run;
    }

    /// <summary>
    /// BPTT of <paramref name="run"/>, adding into <paramref name="g"/> (same names as the parameters).
    /// dTop[t]: gradient w.r.t. the top layer's h_t (or null); dTopReverse[t]: w.r.t. the top layer's reverse output at
    /// time t (bidirectional; or null); lastH[k], lastC[k]: gradient w.r.t. layer k's final h and c (or null), in both
    /// directions of a bidirectional stack. Returns the gradients w.r.t. each layer's initial h_0 and c_0 (forward).
    /// <paramref name="stepInputBackward"/>(t, dAx_t) is the backward of Forward's stepInput: it returns the gradient w.r.t. h_t.
    /// </summary>
    public (double[][] DH0, double[][] DC0) Backward(Dictionary<string, double[]> p, Dictionary<string, double[]> g, RefStackRun run,
        double[][]? dTop, double[][]? lastH = null, double[][]? lastC = null, double[][]? dTopReverse = null, Func<int, double[], double[]>? stepInputBackward = null)
    {
        int n = run.Inputs.Length;
        var dH0 = new double[layers][];
        var dC0 = new double[layers][];
        // Gradients w.r.t. the undropped outputs (the head's are w.r.t. the dropped ones), in time order.
        double[][] dAbove = [.. (dTop ?? Zeros(n, hidden)).Select((d, t) => Dropped(run.Drop, layers - 1, t, d))];
        double[][] dAboveReverse = [.. (dTopReverse ?? Zeros(n, hidden)).Select((d, t) => Dropped(run.DropReverse, layers - 1, n - 1 - t, d))];
        int[] reversed = [.. run.Inputs.Reverse()];
        for (int k = layers - 1; k >= 0; k--)
        {
            var below = k == 0 ? null : Enumerable.Range(0, n).Select(t => Input(run, k - 1, t)).ToArray();
            var (dBelow, dh0, dc0) = LayerBackward(p, g, k, "", run.Inputs, below, run.Forward[k], dAbove, lastH?[k], lastC?[k], k == 0 ? stepInputBackward : null);
            dH0[k] = dh0;
            dC0[k] = dc0;
            if (run.Reverse is not null)
            {
                var (dBelowReversed, _, _) = LayerBackward(p, g, k, "_reverse", reversed, below?.Reverse().ToArray(), run.Reverse[k],
                    [.. dAboveReverse.Reverse()], lastH?[k], lastC?[k]);
                if (k > 0)
                {
                    for (int t = 0; t < n; t++)
                        for (int j = 0; j < dBelow[t].Length; j++)
                            dBelow[t][j] += dBelowReversed[n - 1 - t][j];
                }
            }
            if (k == 0)
                break;
            // Split d[forward; reverse] of the layer below.
            dAbove = [.. dBelow.Select((d, t) => Dropped(run.Drop, k - 1, t, d[..hidden]))];
            if (run.Reverse is not null)
                dAboveReverse = [.. dBelow.Select((d, t) => Dropped(run.DropReverse, k - 1, n - 1 - t, d[hidden..]))];
        }
        return (dH0, dC0);
    }

    /// <summary>What layer k + 1 reads at time t: h_t of layer k, or [forward h_t; reverse h_t] when bidirectional (after dropout).</summary>
    private static double[] Input(RefStackRun run, int k, int t) =>
        run.Reverse is null ? run.Output(k, t) : [.. run.Output(k, t), .. run.ReverseOutput(k, t)];

    /// <summary>x ⊙ drop(k, t), or x itself without dropout there.</summary>
    internal static double[] Dropped(Func<int, int, double[]?>? drop, int k, int t, double[] x) =>
        drop?.Invoke(k, t) is { } f ? x.Select((v, j) => v * f[j]).ToArray() : x;

    /// <summary>One direction of layer k over its own steps: tokens (layer 0) or the vectors <paramref name="below"/>; steps from <paramref name="length"/> on hold.</summary>
    private RefLayerRun LayerForward(Dictionary<string, double[]> p, int k, string suffix, int[] tokens, double[][]? below, int length, double[]? h0, double[]? c0,
        Func<int, double[], double[]>? stepInput = null)
    {
        int n = tokens.Length;
        var (wIh, wHh, bIh, bHh) = Weights(p, k, suffix);
        var hs = new double[n + 1][];
        var cs = new double[n + 1][];
        var ax = new double[]?[n];
        var ah = new double[]?[n];
        hs[0] = (double[]?)h0?.Clone() ?? new double[hidden];
        cs[0] = (double[]?)c0?.Clone() ?? new double[hidden];
        for (int t = 0; t < n; t++)
        {
            if (t >= length)
            {
                hs[t + 1] = hs[t];
                cs[t + 1] = cs[t];
                continue;
            }
            var a = (double[])bIh.Clone();
            if (below is null)
            {
                if (tokens[t] >= 0)
                    for (int i = 0; i < a.Length; i++)
                        a[i] += wIh[i * vocab + tokens[t]]; // W_ih times a one-hot = one column
            }
            else
            {
                MultiplyAdd(wIh, below[t], a);
            }
            if (stepInput is not null)
            {
                var extra = stepInput(t, hs[t]);
                for (int i = 0; i < a.Length; i++)
                    a[i] += extra[i];
            }
            var b = (double[])bHh.Clone();
            MultiplyAdd(wHh, hs[t], b);
            (hs[t + 1], cs[t + 1]) = cell.Forward(a, b, hs[t], cs[t]);
            ax[t] = a;
            ah[t] = b;
        }
        return new RefLayerRun(hs, cs, ax, ah);
    }

    /// <summary>
    /// BPTT of one direction of layer k over its own steps, into <paramref name="g"/>: from dOut[j] on its outputs and
    /// dhLast, dcLast on its final state. Returns the gradient w.r.t. its inputs per own step (empty rows for layer 0) and its initial state.
    /// </summary>
    private (double[][] DBelow, double[] Dh0, double[] Dc0) LayerBackward(Dictionary<string, double[]> p, Dictionary<string, double[]> g, int k, string suffix,
        int[] tokens, double[][]? below, RefLayerRun run, double[][] dOut, double[]? dhLast, double[]? dcLast, Func<int, double[], double[]>? stepInputBackward = null)
    {
        int n = tokens.Length, gh = cell.Gates * hidden, width = below?[0].Length ?? 0;
        var (wIh, wHh, _, _) = Weights(p, k, suffix);
        var (gWIh, gWHh, gBIh, gBHh) = Weights(g, k, suffix);
        var dBelow = Zeros(n, width);
        var dhNext = (double[]?)dhLast?.Clone() ?? new double[hidden]; // into h_t from after step t
        var dcNext = (double[]?)dcLast?.Clone() ?? new double[hidden]; // into c_t from after step t
        for (int t = n - 1; t >= 0; t--)
        {
            var dh = new double[hidden];
            for (int j = 0; j < hidden; j++)
                dh[j] = dOut[t][j] + dhNext[j];
            if (run.Ax[t] is not { } a || run.Ah[t] is not { } b)
            {
                dhNext = dh; // a held step is the identity: its gradient passes to the step before unchanged
                continue;
            }
            var hPrev = run.H[t];
            var (dAx, dAh, dhDirect, dcPrev) = cell.Backward(a, b, hPrev, run.C[t], dh, dcNext);
            for (int i = 0; i < gh; i++)
            {
                gBIh[i] += dAx[i];
                gBHh[i] += dAh[i];
                for (int j = 0; j < hidden; j++)
                    gWHh[i * hidden + j] += dAh[i] * hPrev[j];
                if (below is null)
                {
                    if (tokens[t] >= 0)
                        gWIh[i * vocab + tokens[t]] += dAx[i]; // one-hot input: only the token's column
                }
                else
                {
                    for (int j = 0; j < width; j++)
                    {
                        gWIh[i * width + j] += dAx[i] * below[t][j];
                        dBelow[t][j] += wIh[i * width + j] * dAx[i];
                    }
                }
            }
            // dh_{t−1} = W_hhᵀ·dAh + the cell's direct path (GRU z ⊙ dh); dc_{t−1} from the cell (LSTM f ⊙ dc).
            dhNext = dhDirect;
            for (int i = 0; i < gh; i++)
                for (int j = 0; j < hidden; j++)
                    dhNext[j] += wHh[i * hidden + j] * dAh[i];
            if (stepInputBackward is not null)
            {
                var ds = stepInputBackward(t, dAx);
                for (int j = 0; j < hidden; j++)
                    dhNext[j] += ds[j];
            }
            dcNext = dcPrev;
        }
        return (dBelow, dhNext, dcNext);
    }

    private (double[] WIh, double[] WHh, double[] BIh, double[] BHh) Weights(Dictionary<string, double[]> p, int k, string suffix) =>
        (p[$"{prefix}weight_ih_l{k}{suffix}"], p[$"{prefix}weight_hh_l{k}{suffix}"], p[$"{prefix}bias_ih_l{k}{suffix}"], p[$"{prefix}bias_hh_l{k}{suffix}"]);

    /// <summary>y += W·x for W [rows, x.Length] with rows = y.Length.</summary>
    private static void MultiplyAdd(double[] w, double[] x, double[] y)
    {
        for (int i = 0; i < y.Length; i++)
            for (int j = 0; j < x.Length; j++)
                y[i] += w[i * x.Length + j] * x[j];
    }

    private static double[][] Zeros(int n, int width) => Enumerable.Range(0, n).Select(_ => new double[width]).ToArray();
}
