namespace GpuRnn.Tests.Reference;

/// <summary>The torch.optim algorithms the reference covers.</summary>
public enum RefOptimizerKind { Sgd, Adagrad, RmsProp, Adam }

/// <summary>
/// torch.optim.{SGD, Adagrad, RMSprop, Adam} with torch's defaults and weight_decay = 0, element by
/// element over every parameter of a <see cref="RefModel"/>. Formulas follow torch's single-tensor
/// ("foreach=False") code paths:
///   SGD:     buf = g on the first step, then buf = momentum*buf + g (dampening 0); p -= lr*buf
///            (p -= lr*g without momentum; then no state is kept).
///   Adagrad: sum += g^2; p -= lr * g / (sqrt(sum) + 1e-10)            (lr_decay 0, initial sum 0)
///   RMSprop: sq = 0.99*sq + 0.01*g^2; p -= lr * g / (sqrt(sq) + 1e-8)  (not centered, no momentum)
///   Adam:    m = 0.9*m + 0.1*g; v = 0.999*v + 0.001*g^2; t = step count (from 1);
///            p -= (lr / (1 - 0.9^t)) * m / (sqrt(v) / sqrt(1 - 0.999^t) + 1e-8)
/// </summary>
public sealed class RefOptimizer
{
    private const double AdagradEps = 1e-10;
    private const double RmsAlpha = 0.99;
    private const double RmsEps = 1e-8;
    private const double AdamBeta1 = 0.9;
    private const double AdamBeta2 = 0.999;
    private const double AdamEps = 1e-8;

    private readonly RefOptimizerKind _kind;
    private readonly double _lr;
    private readonly double _momentum;
    private readonly Dictionary<string, Dictionary<string, double[]>> _slots = new();
    private long _step; // torch keeps a step per parameter; all parameters step together here

    public RefOptimizer(RefOptimizerKind kind, double lr, double momentum = 0)
    {
        if (!(lr >= 0)) throw new ArgumentOutOfRangeException(nameof(lr), "lr must be >= 0");
        if (!(momentum >= 0)) throw new ArgumentOutOfRangeException(nameof(momentum), "momentum must be >= 0");
        if (momentum != 0 && kind != RefOptimizerKind.Sgd)
            throw new ArgumentException("momentum is only supported for SGD here", nameof(momentum));
        _kind = kind;
        _lr = lr;
        _momentum = momentum;
        foreach (string slot in SlotNames(kind)) _slots[slot] = new Dictionary<string, double[]>();
    }

    /// <summary>Updates every parameter of <paramref name="m"/> in place from <paramref name="grads"/> (same names).</summary>
    public void Step(RefModel m, Dictionary<string, double[]> grads)
    {
        ArgumentNullException.ThrowIfNull(m);
        ArgumentNullException.ThrowIfNull(grads);
        foreach (var (name, p) in m.Params)
        {
            if (!grads.TryGetValue(name, out var g)) throw new ArgumentException($"missing gradient '{name}'", nameof(grads));
            if (g.Length != p.Length) throw new ArgumentException($"gradient '{name}' has {g.Length} values, parameter has {p.Length}", nameof(grads));
        }
        _step++;

        foreach (var (name, p) in m.Params)
        {
            double[] g = grads[name]; // same shape as p
            switch (_kind)
            {
                case RefOptimizerKind.Sgd:
                    StepSgd(name, p, g);
                    break;
                case RefOptimizerKind.Adagrad:
                    StepAdagrad(name, p, g);
                    break;
                case RefOptimizerKind.RmsProp:
                    StepRmsProp(name, p, g);
                    break;
                case RefOptimizerKind.Adam:
                    StepAdam(name, p, g);
                    break;
                default:
                    throw new InvalidOperationException($"unknown optimizer {_kind}");
            }
        }
    }

    /// <summary>
    /// The live state of one slot, by parameter name: "momentum_buffer" (SGD), "sum" (Adagrad),
    /// "square_avg" (RMSprop), "exp_avg" / "exp_avg_sq" (Adam). Empty before the first step,
    /// and always empty for SGD without momentum (torch keeps no buffer then).
    /// </summary>
    public Dictionary<string, double[]> State(string slot)
    {
        if (!_slots.TryGetValue(slot, out var state))
            throw new ArgumentException($"{_kind} has no state slot '{slot}'; it has: {string.Join(", ", SlotNames(_kind))}", nameof(slot));
        return state;
    }

    private static string[] SlotNames(RefOptimizerKind kind) => kind switch
    {
        RefOptimizerKind.Sgd => ["momentum_buffer"],
        RefOptimizerKind.Adagrad => ["sum"],
        RefOptimizerKind.RmsProp => ["square_avg"],
        RefOptimizerKind.Adam => ["exp_avg", "exp_avg_sq"],
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    /// <summary>The slot's buffer for one parameter, created as zeros on first use (torch's lazy state init).</summary>
    private double[] Slot(string slot, string name, int length)
    {
        var state = _slots[slot];
        if (!state.TryGetValue(name, out var buf))
        {
            buf = new double[length];
            state[name] = buf;
        }
        return buf;
    }

    private void StepSgd(string name, double[] p, double[] g)
    {
        if (_momentum == 0)
        {
            for (int i = 0; i < p.Length; i++) p[i] -= _lr * g[i];
            return;
        }
        var state = _slots["momentum_buffer"];
        if (!state.TryGetValue(name, out var buf))
        {
            // torch: the first buffer is a copy of the gradient, NOT momentum*0 + g scaled by (1 - dampening).
            buf = (double[])g.Clone();
            state[name] = buf;
        }
        else
        {
            for (int i = 0; i < p.Length; i++) buf[i] = _momentum * buf[i] + g[i];
        }
        for (int i = 0; i < p.Length; i++) p[i] -= _lr * buf[i];
    }

    private void StepAdagrad(string name, double[] p, double[] g)
    {
        double[] sum = Slot("sum", name, p.Length);
        double clr = _lr; // lr / (1 + (step - 1) * lr_decay) with lr_decay = 0
        for (int i = 0; i < p.Length; i++)
        {
            sum[i] += g[i] * g[i];
            p[i] -= clr * g[i] / (Math.Sqrt(sum[i]) + AdagradEps);
        }
    }

    private void StepRmsProp(string name, double[] p, double[] g)
    {
        double[] sq = Slot("square_avg", name, p.Length);
        for (int i = 0; i < p.Length; i++)
        {
            sq[i] = RmsAlpha * sq[i] + (1 - RmsAlpha) * g[i] * g[i];
            p[i] -= _lr * g[i] / (Math.Sqrt(sq[i]) + RmsEps);
        }
    }

    private void StepAdam(string name, double[] p, double[] g)
    {
        double[] m = Slot("exp_avg", name, p.Length);
        double[] v = Slot("exp_avg_sq", name, p.Length);
        double bc1 = 1 - Math.Pow(AdamBeta1, _step);
        double bc2 = 1 - Math.Pow(AdamBeta2, _step);
        double stepSize = _lr / bc1;
        double bc2Sqrt = Math.Sqrt(bc2);
        for (int i = 0; i < p.Length; i++)
        {
            m[i] = AdamBeta1 * m[i] + (1 - AdamBeta1) * g[i];
            v[i] = AdamBeta2 * v[i] + (1 - AdamBeta2) * g[i] * g[i];
            // torch: denom = sqrt(v)/sqrt(bc2) + eps, eps added AFTER the bias correction.
            double denom = Math.Sqrt(v[i]) / bc2Sqrt + AdamEps;
            p[i] -= stepSize * m[i] / denom;
        }
    }
}
