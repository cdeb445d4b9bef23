using GpuRnn.Kernels;

namespace GpuRnn.Tests.Reference;

/// <summary>
/// The states of one <see cref="RefStack.Forward"/> pass: per layer k and time index t (0 = the initial state),
/// <c>H[k][t]</c>, <c>C[k][t]</c> [H] (C zeros unless LSTM), and per step t the two pre-activations
/// <c>Ax[k][t] = W_ih x + b_ih</c>, <c>Ah[k][t] = W_hh h' + b_hh</c> [G] (null for a held step).
/// </summary>
public sealed record RefStackRun(int[] Inputs, int Length, double[][][] H, double[][][] C, double[]?[][] Ax, double[]?[][] Ah)
{
    /// <summary>Dropout factors (0 or 1/(1 − p)) [H] of layer k's output at step t as the layer above or the head reads it; null (or a null result): none.</summary>
    public Func<int, int, double[]?>? Drop { get; init; }

    /// <summary>Layer k's output at step t (time index t + 1) as the layer above or the head reads it: h ⊙ the dropout factors.</summary>
    public double[] Output(int k, int t) => Drop?.Invoke(k, t) is { } f ? H[k][t + 1].Select((v, j) => v * f[j]).ToArray() : H[k][t + 1];

    /// <summary>Layer k's state after the last step (a held sequence's true last state).</summary>
    public double[] FinalH(int k) => H[k][^1];

    /// <summary>Layer k's cell state after the last step (zeros unless LSTM).</summary>
    public double[] FinalC(int k) => C[k][^1];

    /// <summary>The top layer's h_t, t = 0 … n − 1 (time index t + 1), as the head reads it (after dropout).</summary>
    public double[] TopOutput(int t) => Output(H.Length - 1, t);
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
/// </summary>
public sealed class RefStack(CellKind cell, string prefix, int vocab, int hidden, int layers)
{
    private readonly RefCell cell = RefCell.For(cell);

    /// <summary>The cell of every layer.</summary>
    public CellKind Cell => cell.Kind;

    /// <summary>
    /// Runs the stack over <paramref name="seq"/> (token ids; a negative id is a padding token with no input)
    /// from h0, c0 (per layer [H]; null = zeros); steps from <paramref name="length"/> on (default: none) hold.
    /// With <paramref name="drop"/>, layer k's output at step t is multiplied by drop(k, t) [H] (when not null) where the
    /// layer above and the head read it (dropout); the recurrence and the final states use the undropped h.
    /// </summary>
    public RefStackRun Forward(Dictionary<string, double[]> p, int[] seq, double[][]? h0 = null, double[][]? c0 = null, int? length = null, Func<int, int, double[]?>? drop = null)
    {
        int n = seq.Length, len = length ?? n, g = cell.Gates * hidden;
        var hs = new double[layers][][];
        var cs = new double[layers][][];
        var ax = new double[]?[layers][];
        var ah = new double[]?[layers][];
        for (int k = 0; k < layers; k++)
        {
            var (wIh, wHh, bIh, bHh) = Weights(p, k);
            hs[k] = new double[n + 1][];
            cs[k] = new double[n + 1][];
            ax[k] = new double[n][];
            ah[k] = new double[n][];
            hs[k][0] = (double[]?)h0?[k].Clone() ?? new double[hidden];
            cs[k][0] = (double[]?)c0?[k].Clone() ?? new double[hidden];
            for (int t = 0; t < n; t++)
            {
                if (t >= len)
                {
                    hs[k][t + 1] = hs[k][t];
                    cs[k][t + 1] = cs[k][t];
                    continue;
                }
                var a = (double[])bIh.Clone();
                if (k == 0)
                {
                    if (seq[t] >= 0)
                        for (int i = 0; i < g; i++)
                            a[i] += wIh[i * vocab + seq[t]]; // W_ih times a one-hot = one column
                }
                else
                {
                    MultiplyAdd(wIh, Dropped(drop, k - 1, t, hs[k - 1][t + 1]), a);
                }
                var b = (double[])bHh.Clone();
                MultiplyAdd(wHh, hs[k][t], b);
                (hs[k][t + 1], cs[k][t + 1]) = cell.Forward(a, b, hs[k][t], cs[k][t]);
                ax[k][t] = a;
                ah[k][t] = b;
            }
        }
        return new RefStackRun(seq, len, hs, cs, ax, ah) { Drop = drop };
    }

    /// <summary>
    /// BPTT of <paramref name="run"/>, adding into <paramref name="g"/> (same names as the parameters).
    /// dTop[t]: gradient w.r.t. the top layer's h_t (or null); lastH[k], lastC[k]: gradient w.r.t. layer k's final
    /// h and c (or null). Returns the gradients w.r.t. each layer's initial h_0 and c_0.
    /// </summary>
    public (double[][] DH0, double[][] DC0) Backward(Dictionary<string, double[]> p, Dictionary<string, double[]> g, RefStackRun run,
        double[][]? dTop, double[][]? lastH = null, double[][]? lastC = null)
    {
        int n = run.Inputs.Length, gh = cell.Gates * hidden;
        var dH0 = new double[layers][];
        var dC0 = new double[layers][];
        double[][] dAbove = Enumerable.Range(0, n).Select(t => Dropped(run.Drop, layers - 1, t, dTop?[t] ?? new double[hidden])).ToArray(); // w.r.t. the undropped h
        for (int k = layers - 1; k >= 0; k--)
        {
            var (wIh, wHh, _, _) = Weights(p, k);
            var (gWIh, gWHh, gBIh, gBHh) = Weights(g, k);
            var dBelow = Zeros(n, hidden);
            var dhNext = (double[]?)lastH?[k].Clone() ?? new double[hidden]; // into h_t from after step t
            var dcNext = (double[]?)lastC?[k].Clone() ?? new double[hidden]; // into c_t from after step t
            for (int t = n - 1; t >= 0; t--)
            {
                var dh = new double[hidden];
                for (int j = 0; j < hidden; j++)
                    dh[j] = dAbove[t][j] + dhNext[j];
                if (run.Ax[k][t] is not { } a || run.Ah[k][t] is not { } b)
                {
                    dhNext = dh; // a held step is the identity: its gradient passes to the step before unchanged
                    continue;
                }
                var hPrev = run.H[k][t];
                var (dAx, dAh, dhDirect, dcPrev) = cell.Backward(a, b, hPrev, run.C[k][t], dh, dcNext);
                var input = k > 0 ? run.Output(k - 1, t) : null;
                for (int i = 0; i < gh; i++)
                {
                    gBIh[i] += dAx[i];
                    gBHh[i] += dAh[i];
                    for (int j = 0; j < hidden; j++)
                        gWHh[i * hidden + j] += dAh[i] * hPrev[j];
                    if (input is null)
                    {
                        if (run.Inputs[t] >= 0)
                            gWIh[i * vocab + run.Inputs[t]] += dAx[i]; // one-hot input: only the token's column
                    }
                    else
                    {
                        for (int j = 0; j < hidden; j++)
                        {
                            gWIh[i * hidden + j] += dAx[i] * input[j];
                            dBelow[t][j] += wIh[i * hidden + j] * dAx[i];
                        }
                    }
                }
                // dh_{t−1} = W_hhᵀ·dAh + the cell's direct path (GRU z ⊙ dh); dc_{t−1} from the cell (LSTM f ⊙ dc).
                dhNext = dhDirect;
                for (int i = 0; i < gh; i++)
                    for (int j = 0; j < hidden; j++)
                        dhNext[j] += wHh[i * hidden + j] * dAh[i];
                dcNext = dcPrev;
            }
            dH0[k] = dhNext;
            dC0[k] = dcNext;
            dAbove = Enumerable.Range(0, n).Select(t => k > 0 ? Dropped(run.Drop, k - 1, t, dBelow[t]) : dBelow[t]).ToArray();
        }
        return (dH0, dC0);
    }

    /// <summary>x ⊙ drop(k, t), or x itself without dropout there.</summary>
    private static double[] Dropped(Func<int, int, double[]?>? drop, int k, int t, double[] x) =>
        drop?.Invoke(k, t) is { } f ? x.Select((v, j) => v * f[j]).ToArray() : x;

    private (double[] WIh, double[] WHh, double[] BIh, double[] BHh) Weights(Dictionary<string, double[]> p, int k) =>
        (p[$"{prefix}weight_ih_l{k}"], p[$"{prefix}weight_hh_l{k}"], p[$"{prefix}bias_ih_l{k}"], p[$"{prefix}bias_hh_l{k}"]);

    /// <summary>y += W·x for W [rows, H] with rows = y.Length.</summary>
    private void MultiplyAdd(double[] w, double[] x, double[] y)
    {
        for (int i = 0; i < y.Length; i++)
            for (int j = 0; j < hidden; j++)
                y[i] += w[i * hidden + j] * x[j];
    }

    private static double[][] Zeros(int n, int width) => Enumerable.Range(0, n).Select(_ => new double[width]).ToArray();
}
