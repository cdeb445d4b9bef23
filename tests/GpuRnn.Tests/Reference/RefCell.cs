using GpuRnn.Kernels;

namespace GpuRnn.Tests.Reference;

/// <summary>
/// One time step of one cell for one sequence, plain loops in double, written from the equations of
/// DESIGN.md §2 (PyTorch's). A step sees its two pre-activations, each [G] = [g·H] with the gate rows in
/// PyTorch's order: <c>ax = W_ih x + b_ih</c> and <c>ah = W_hh h' + b_hh</c>; the weights stay with
/// <see cref="RefStack"/>, which is the same for every cell. The backward recomputes what it needs from
/// the same inputs (no saved state), and returns the gradients of both pre-activations plus the
/// direct-path gradients into h' and c' (those that do not pass through W_hh).
/// </summary>
public abstract class RefCell
{
    private RefCell(CellKind kind) => Kind = kind;

    /// <summary>The cell this reference computes.</summary>
    public CellKind Kind { get; }

    /// <summary>Gates g: W_ih, W_hh and both biases have g·H rows.</summary>
    public int Gates => (int)Kind;

    /// <summary>Whether the cell carries c besides h (LSTM).</summary>
    public bool HasCellState => Kind == CellKind.Lstm;

    /// <summary>The reference of a cell kind.</summary>
    public static RefCell For(CellKind kind) => kind switch
    {
        CellKind.Elman => Elman,
        CellKind.Gru => Gru,
        CellKind.Lstm => Lstm,
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown cell kind"),
    };

    private static readonly RefCell Elman = new ElmanCell();
    private static readonly RefCell Gru = new GruCell();
    private static readonly RefCell Lstm = new LstmCell();

    /// <summary>
    /// h_t (and c_t; zeros for a cell without one) from ax, ah [G] and h', c' [H]. <paramref name="gates"/>, when
    /// given, receives what the device's forward step saves (<see cref="CellShapes.SavedWidth"/>: GRU r, z, n,
    /// hn = ah_n; LSTM i, f, g, o).
    /// </summary>
    public abstract (double[] H, double[] C) Forward(double[] ax, double[] ah, double[] hPrev, double[] cPrev, double[]? gates = null);

    /// <summary>
    /// From the total gradients on h_t (<paramref name="dh"/>) and c_t (<paramref name="dc"/>, from step t + 1;
    /// LSTM only): the pre-activation gradients dAx, dAh [G] and the direct-path gradients into h' and c' [H]
    /// (GRU z ⊙ dh; LSTM f ⊙ dc; the rest of dh' is W_hhᵀ·dAh, which the stack adds).
    /// </summary>
    public abstract (double[] DAx, double[] DAh, double[] DhPrev, double[] DcPrev) Backward(
        double[] ax, double[] ah, double[] hPrev, double[] cPrev, double[] dh, double[] dc);

    private static double Sigmoid(double a) => 1 / (1 + Math.Exp(-a));

    /// <summary>h = tanh(ax + ah).</summary>
    private sealed class ElmanCell() : RefCell(CellKind.Elman)
    {
        public override (double[] H, double[] C) Forward(double[] ax, double[] ah, double[] hPrev, double[] cPrev, double[]? gates = null)
        {
            int n = hPrev.Length;
            var h = new double[n];
            for (int u = 0; u < n; u++)
                h[u] = Math.Tanh(ax[u] + ah[u]);
            return (h, new double[n]);
        }

        public override (double[] DAx, double[] DAh, double[] DhPrev, double[] DcPrev) Backward(
            double[] ax, double[] ah, double[] hPrev, double[] cPrev, double[] dh, double[] dc)
        {
            int n = hPrev.Length;
            var da = new double[n];
            for (int u = 0; u < n; u++)
            {
                double h = Math.Tanh(ax[u] + ah[u]);
                da[u] = dh[u] * (1 - h * h);
            }
            return (da, (double[])da.Clone(), new double[n], new double[n]);
        }
    }

    /// <summary>r = σ(ax_r + ah_r), z = σ(ax_z + ah_z), n = tanh(ax_n + r ⊙ ah_n), h = (1 − z) ⊙ n + z ⊙ h'.</summary>
    private sealed class GruCell() : RefCell(CellKind.Gru)
    {
        public override (double[] H, double[] C) Forward(double[] ax, double[] ah, double[] hPrev, double[] cPrev, double[]? gates = null)
        {
            int n = hPrev.Length;
            var h = new double[n];
            for (int u = 0; u < n; u++)
            {
                double r = Sigmoid(ax[u] + ah[u]);
                double z = Sigmoid(ax[n + u] + ah[n + u]);
                double nn = Math.Tanh(ax[2 * n + u] + r * ah[2 * n + u]);
                h[u] = (1 - z) * nn + z * hPrev[u];
                if (gates is not null)
                {
                    gates[u] = r;
                    gates[n + u] = z;
                    gates[2 * n + u] = nn;
                    gates[3 * n + u] = ah[2 * n + u];
                }
            }
            return (h, new double[n]);
        }

        public override (double[] DAx, double[] DAh, double[] DhPrev, double[] DcPrev) Backward(
            double[] ax, double[] ah, double[] hPrev, double[] cPrev, double[] dh, double[] dc)
        {
            int n = hPrev.Length;
            var dAx = new double[3 * n];
            var dAh = new double[3 * n];
            var dhPrev = new double[n];
            for (int u = 0; u < n; u++)
            {
                double r = Sigmoid(ax[u] + ah[u]);
                double z = Sigmoid(ax[n + u] + ah[n + u]);
                double hn = ah[2 * n + u];
                double nn = Math.Tanh(ax[2 * n + u] + r * hn);
                double dn = dh[u] * (1 - z);                 // ∂h/∂n = 1 − z
                double dz = dh[u] * (hPrev[u] - nn);         // ∂h/∂z = h' − n
                double daN = dn * (1 - nn * nn);             // through tanh
                double dr = daN * hn;                        // ∂(r ⊙ hn)/∂r = hn
                dAx[u] = dAh[u] = dr * r * (1 - r);
                dAx[n + u] = dAh[n + u] = dz * z * (1 - z);
                dAx[2 * n + u] = daN;
                dAh[2 * n + u] = daN * r;                    // ∂(r ⊙ hn)/∂hn = r
                dhPrev[u] = dh[u] * z;                       // ∂h/∂h' = z (direct path)
            }
            return (dAx, dAh, dhPrev, new double[n]);
        }
    }

    /// <summary>i, f, g, o = σ, σ, tanh, σ of (ax + ah); c = f ⊙ c' + i ⊙ g; h = o ⊙ tanh(c).</summary>
    private sealed class LstmCell() : RefCell(CellKind.Lstm)
    {
        public override (double[] H, double[] C) Forward(double[] ax, double[] ah, double[] hPrev, double[] cPrev, double[]? gates = null)
        {
            int n = hPrev.Length;
            var h = new double[n];
            var c = new double[n];
            for (int u = 0; u < n; u++)
            {
                var (i, f, g, o) = Gates4(ax, ah, n, u);
                c[u] = f * cPrev[u] + i * g;
                h[u] = o * Math.Tanh(c[u]);
                if (gates is not null)
                {
                    gates[u] = i;
                    gates[n + u] = f;
                    gates[2 * n + u] = g;
                    gates[3 * n + u] = o;
                }
            }
            return (h, c);
        }

        public override (double[] DAx, double[] DAh, double[] DhPrev, double[] DcPrev) Backward(
            double[] ax, double[] ah, double[] hPrev, double[] cPrev, double[] dh, double[] dc)
        {
            int n = hPrev.Length;
            var da = new double[4 * n];
            var dcPrev = new double[n];
            for (int u = 0; u < n; u++)
            {
                var (i, f, g, o) = Gates4(ax, ah, n, u);
                double c = f * cPrev[u] + i * g;
                double tc = Math.Tanh(c);
                double dcTotal = dc[u] + dh[u] * o * (1 - tc * tc); // c reaches h through o ⊙ tanh(c)
                da[u] = dcTotal * g * i * (1 - i);
                da[n + u] = dcTotal * cPrev[u] * f * (1 - f);
                da[2 * n + u] = dcTotal * i * (1 - g * g);
                da[3 * n + u] = dh[u] * tc * o * (1 - o);
                dcPrev[u] = dcTotal * f;
            }
            return (da, (double[])da.Clone(), new double[n], dcPrev);
        }

        private static (double I, double F, double G, double O) Gates4(double[] ax, double[] ah, int n, int u) =>
            (Sigmoid(ax[u] + ah[u]), Sigmoid(ax[n + u] + ah[n + u]), Math.Tanh(ax[2 * n + u] + ah[2 * n + u]), Sigmoid(ax[3 * n + u] + ah[3 * n + u]));
    }
}
