using System.Runtime.CompilerServices;
using GpuRnn.Kernels;
using GpuRnn.Tests.Reference;
using ILGPU;
using NUnit.Framework;

namespace GpuRnn.Tests.Kernels;

/// <summary>
/// The fused cell steps (<see cref="DeviceKernels.CellForward"/>, <see cref="DeviceKernels.CellBackward"/>) against
/// the double-precision <see cref="RefCell"/>, step by step over T steps chained as the stack chains them
/// (h_t, c_t feed step t + 1; dAh and the direct-path carry of step t + 1 feed step t). Each launch is checked
/// against the reference evaluated in double on that launch's own float inputs, so every step gets the error
/// bound of one step, derived below from float32 rounding (u = 2⁻²⁴), not fitted to the results.
/// </summary>
[TestFixtureSource(typeof(TestDevices), nameof(TestDevices.TiledSpecs))]
public sealed class CellTests(string spec) : DeviceFixture(spec)
{
    // Roundings along the longest elementwise chain of one output (inputs rounded to float, the 1 − x
    // factors, the products and sums of the epilogue), counted generously per cell: GRU dA_r is the
    // longest, 13 (dh·(1 − z)·(1 − n²)·hn·r·(1 − r) with z, n, hn, r read back rounded).
    private const int ChainRoundings = 16;
    // Relative error of one float32 activation on the CPU accelerator: σ = 1 / (1 + e^−a) is an exp (within
    // 1 ulp = 2u), an add and a divide, 4u in all; tanh is within 1 ulp (2u).
    private const int SigmoidRoundings = 4;
    private const int TanhRoundings = 2;

    private static readonly CellKind[] Cells = [CellKind.Elman, CellKind.Gru, CellKind.Lstm];

    private static IEnumerable<TestCaseData> StepCases() =>
        from cell in Cells
        from h in new[] { 1, 3, 17, 33 }
        from b in new[] { 1, 3 }
        from t in new[] { 1, 7 }
        from padded in new[] { false, true }
        select new TestCaseData(cell, b, h, t, padded);

    /// <summary>
    /// T forward steps then T backward steps of one layer. Padded: row 1 (row 0 when B = 1) ends after
    /// 2 steps, so with T = 7 it holds from step 2 on (h = h', c = c', zero pre-activation gradients, the
    /// direct-path carry passed on unchanged), and with T = 1 it runs; with B = 3, row 2 ends at step 0 (held
    /// throughout). Padded batches also get a carry injected at the last step from outside the window (an
    /// encoder's final-state gradient), which held rows pass down to their last true step.
    /// </summary>
    [TestCaseSource(nameof(StepCases))]
    public void StepsMatchReference(CellKind cell, int b, int h, int steps, bool padded)
    {
        var rc = RefCell.For(cell);
        int g = rc.Gates, gh = g * h, sw = CellShapes.SavedWidth(cell, h);
        bool lstm = rc.HasCellState, gru = cell == CellKind.Gru;
        var rng = new Random(((int)cell * 1000) + (b * 100) + h + (steps * 7) + (padded ? 1 : 0));
        int[] lengths = Enumerable.Range(0, b).Select(r => r == Math.Min(1, b - 1) ? 2 : r == 2 ? 0 : steps + 1).ToArray();
        var lengthsView = padded ? Put(lengths) : default;
        bool Held(int row, int t) => padded && lengths[row] <= t;

        var w = TestData.Uniform(rng, (long)gh * h, 1.0 / Math.Sqrt(h)); // [G, H]
        var bHh = TestData.Uniform(rng, gh);                                // [G]
        var wView = Put(w);
        var bView = Put(bHh);
        int folded = CellShapes.FoldedHhColumns(cell, h);
        double approx = TestDevices.TanhTolerance(Device);

        // ---- forward: h_t, c_t of step t feed step t + 1
        var hs = new float[steps + 1][];   // [B, H] each
        var cs = new float[steps + 1][];   // [B, H] each (zeros unless LSTM)
        var xs = new float[steps][];       // [B, G] each
        hs[0] = TestData.Uniform(rng, b * h);
        cs[0] = lstm ? TestData.Uniform(rng, b * h, 2) : new float[b * h];
        for (int t = 0; t < steps; t++)
        {
            xs[t] = TestData.Uniform(rng, b * gh, 1.5);
            var hOut = Poisoned(b * h);
            var cOut = lstm ? Poisoned(b * h) : default;
            var saved = sw > 0 ? Poisoned((long)b * sw) : default;
            K.CellForward(cell, b, h, Put(hs[t]), lstm ? Put(cs[t]) : default, wView, bView, Put(xs[t]), saved, hOut, cOut, lengthsView, t);
            hs[t + 1] = Get(hOut);
            cs[t + 1] = lstm ? Get(cOut) : new float[b * h];
            float[] savedGot = sw > 0 ? Get(saved) : [];

            var hExp = new double[b * h];
            var cExp = new double[b * h];
            var sExp = new double[b * sw];
            var hTol = new double[b * h];
            var cTol = new double[b * h];
            var sTol = new double[b * sw];
            for (int row = 0; row < b; row++)
            {
                if (Held(row, t))
                {
                    for (int u = 0; u < h; u++)
                    {
                        int at = row * h + u;
                        Assert.That(hs[t + 1][at], Is.EqualTo(hs[t][at]), $"held h, step {t} row {row}");
                        Assert.That(cs[t + 1][at], Is.EqualTo(cs[t][at]), $"held c, step {t} row {row}");
                        hExp[at] = hs[t + 1][at];
                        cExp[at] = cs[t + 1][at];
                    }
                    for (int k = 0; k < sw; k++)
                        Assert.That(savedGot[row * sw + k], Is.EqualTo(0f), $"held rows save zeros, step {t} row {row}");
                    continue;
                }
                var step = new StepInputs(cell, h, w, bHh, folded, Row(hs[t], row, h), Row(cs[t], row, h), Row(xs[t], row, gh));
                var gates = new double[sw];
                var (hr, cr) = rc.Forward(step.Ax, step.Ah, step.HPrev, step.CPrev, gates);
                var bound = ForwardBound(cell, step, gates, hr, cr, approx);
                for (int u = 0; u < h; u++)
                {
                    hExp[row * h + u] = hr[u];
                    cExp[row * h + u] = lstm ? cr[u] : 0;
                    hTol[row * h + u] = bound.H[u];
                    cTol[row * h + u] = bound.C[u];
                }
                for (int k = 0; k < sw; k++)
                {
                    sExp[row * sw + k] = gates[k];
                    sTol[row * sw + k] = bound.Saved[k];
                }
            }
            string what = $"{cell} forward B={b} H={h} step {t}";
            Check(hs[t + 1], hExp, i => hTol[i], what + " h");
            if (lstm)
                Check(cs[t + 1], cExp, i => cTol[i], what + " c");
            if (sw > 0)
                Check(savedGot, sExp, i => sTol[i], what + " saved");
        }

        // ---- backward, t = T − 1 … 0: dAh and carry of step t + 1 feed step t. The saved activations (and
        // h, c) are the reference's of each step's own float inputs, rounded to float, so that each launch
        // is checked on its own.
        float[]? dAhNext = null;
        float[]? carryNext = padded && cell != CellKind.Elman ? TestData.Uniform(rng, b * h) : null; // injected at T − 1
        for (int t = steps - 1; t >= 0; t--)
        {
            bool hasNext = t + 1 < steps;
            var dH = TestData.Uniform(rng, b * h);
            var savedIn = new float[b * sw];
            var hIn = new float[b * h];
            var cIn = new float[b * h];
            var rowInputs = new StepInputs?[b];
            for (int row = 0; row < b; row++)
            {
                var step = new StepInputs(cell, h, w, bHh, folded, Row(hs[t], row, h), Row(cs[t], row, h), Row(xs[t], row, gh));
                rowInputs[row] = step;
                var gates = new double[sw];
                var (hr, cr) = rc.Forward(step.Ax, step.Ah, step.HPrev, step.CPrev, gates);
                for (int u = 0; u < h; u++)
                {
                    hIn[row * h + u] = (float)hr[u];
                    cIn[row * h + u] = (float)cr[u];
                }
                for (int k = 0; k < sw; k++)
                    savedIn[row * sw + k] = (float)gates[k];
            }
            var dAx = Poisoned((long)b * gh);
            var dAh = gru ? Poisoned((long)b * gh) : dAx;
            var carry = cell == CellKind.Elman ? default : Poisoned(b * h);
            K.CellBackward(cell, b, h, hasNext, hasNext ? Put(dAhNext!) : default, wView, Put(dH), carryNext is not null ? Put(carryNext) : default,
                Put(hs[t]), Put(hIn), lstm ? Put(cs[t]) : default, lstm ? Put(cIn) : default, sw > 0 ? Put(savedIn) : default,
                dAx, dAh, carry, lengthsView, t);
            float[] dAxGot = Get(dAx), dAhGot = Get(dAh), carryGot = cell == CellKind.Elman ? new float[b * h] : Get(carry);

            var dAxExp = new double[b * gh];
            var dAhExp = new double[b * gh];
            var carryExp = new double[b * h];
            var gTol = new double[b * gh];
            var hTol = new double[b * h];
            for (int row = 0; row < b; row++)
            {
                if (Held(row, t))
                {
                    // Expected exactly: zero pre-activation gradients, the carry passed on.
                    for (int u = 0; u < h && carryNext is not null; u++)
                        carryExp[row * h + u] = carryNext[row * h + u];
                    continue;
                }
                var step = rowInputs[row]!;
                // dh = dH + dAhNext·W_hh (+ carryNext for a GRU, whose direct path enters h); an LSTM's enters c.
                var dh = new double[h];
                var dhMag = new double[h];
                var dc = new double[h];
                var dcMag = new double[h];
                for (int u = 0; u < h; u++)
                {
                    dh[u] = dH[row * h + u];
                    dhMag[u] = Math.Abs(dH[row * h + u]);
                    for (int k = 0; k < gh && hasNext; k++)
                    {
                        dh[u] += (double)dAhNext![row * gh + k] * w[k * h + u];
                        dhMag[u] += Math.Abs((double)dAhNext[row * gh + k] * w[k * h + u]);
                    }
                    double next = carryNext?[row * h + u] ?? 0;
                    if (gru)
                    {
                        dh[u] += next;
                        dhMag[u] += Math.Abs(next);
                    }
                    else
                    {
                        dc[u] = next;
                        dcMag[u] = Math.Abs(next);
                    }
                }
                var (ex, eh, edh, edc) = rc.Backward(step.Ax, step.Ah, step.HPrev, step.CPrev, dh, dc);
                var bound = BackwardBound(cell, step, rc, dhMag, dcMag, approx, gh + 2);
                for (int k = 0; k < gh; k++)
                {
                    dAxExp[row * gh + k] = ex[k];
                    dAhExp[row * gh + k] = eh[k];
                    gTol[row * gh + k] = bound.Gates[k];
                }
                for (int u = 0; u < h; u++)
                {
                    carryExp[row * h + u] = gru ? edh[u] : lstm ? edc[u] : 0;
                    hTol[row * h + u] = bound.Carry[u];
                }
            }
            string what = $"{cell} backward B={b} H={h} step {t} next={hasNext}";
            Check(dAxGot, dAxExp, i => gTol[i], what + " dAx");
            Check(dAhGot, dAhExp, i => gTol[i], what + " dAh");
            if (cell != CellKind.Elman)
                Check(carryGot, carryExp, i => hTol[i], what + " carry");
            dAhNext = dAhGot;
            carryNext = cell == CellKind.Elman ? null : carryGot;
        }
    }

    /// <summary>
    /// Each step is ONE counted launch (DESIGN.md §3a), and the launchers allocate nothing of their own. What a
    /// launch does allocate is ILGPU's: measured on this machine, a CPU-accelerator launch allocates a fixed
    /// amount plus the size of its epilogue argument (it is boxed), so a cell step may allocate what a plain
    /// GEMM launch allocates, measured here on the same device, plus the difference of the epilogue sizes.
    /// </summary>
    [TestCase(CellKind.Elman)]
    [TestCase(CellKind.Gru)]
    [TestCase(CellKind.Lstm)]
    public void EachStepIsOneCountedLaunchThatAllocatesNothingOfItsOwn(CellKind cell)
    {
        const int b = 3, h = 5, repeats = 10;
        int gh = (int)cell * h;
        var state = Put(new float[b * h]);
        var wide = Put(new float[b * gh]);
        var saved = Put(new float[b * 4 * h]);
        var w = Put(new float[gh * h]);
        var bias = Put(new float[gh]);
        var output = Put(new float[b * h]);
        var carry = Put(new float[b * h]);
        var dAx = Put(new float[b * gh]);
        var dAh = Put(new float[b * gh]);
        var lengths = Put(new[] { 1, 2, 3 });
        var gemm = new GemmShape(b, h, h, transA: false, transB: true);
        long Bytes(Action launch)
        {
            launch(); // warm the launch path
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < repeats; i++)
                launch();
            return (GC.GetAllocatedBytesForCurrentThread() - before) / repeats;
        }

        long launches = K.Launches;
        long plain = Bytes(() => K.Gemm(gemm, 1f, state, w, 0f, output));
        long forward = Bytes(() => K.CellForward(cell, b, h, state, state, w, bias, wide, saved, output, carry, lengths, 1));
        long backward = Bytes(() => K.CellBackward(cell, b, h, true, wide, w, state, carry, state, state, state, state, saved, dAx, cell == CellKind.Gru ? dAh : dAx, carry, lengths, 1));
        Device.Accelerator.Synchronize();
        Assert.That(K.Launches - launches, Is.EqualTo(3 * (repeats + 1)), "one counted launch per call");
        var (forwardSize, backwardSize) = cell switch
        {
            CellKind.Elman => (Unsafe.SizeOf<ElmanForwardEpilogue>(), Unsafe.SizeOf<ElmanBackwardEpilogue>()),
            CellKind.Gru => (Unsafe.SizeOf<GruForwardEpilogue>(), Unsafe.SizeOf<GruBackwardEpilogue>()),
            CellKind.Lstm => (Unsafe.SizeOf<LstmForwardEpilogue>(), Unsafe.SizeOf<LstmBackwardEpilogue>()),
            _ => throw new ArgumentOutOfRangeException(nameof(cell)),
        };
        int gemmSize = Unsafe.SizeOf<GemmEpilogue>();
        TestContext.Out.WriteLine($"{Spec} {cell}: managed B per launch: GEMM {plain}, forward {forward}, backward {backward}");
        Assert.That(forward, Is.LessThanOrEqualTo(plain + forwardSize - gemmSize + LaunchSlack), "managed bytes of a forward step");
        Assert.That(backward, Is.LessThanOrEqualTo(plain + backwardSize - gemmSize + LaunchSlack), "managed bytes of a backward step");
    }

    // The per-launch measurement of ILGPU's own allocation varies by a few bytes between runs.
    private const long LaunchSlack = 16;

    /// <summary>A launch whose views are too small names the view; an unknown cell kind is refused.</summary>
    [Test]
    public void RejectsWrongSizes()
    {
        const int b = 2, h = 3;
        var ok = Put(new float[b * 4 * h]);
        var small = Put(new float[b * h - 1]);
        var ex = Assert.Throws<ArgumentException>(() => K.CellForward(CellKind.Lstm, b, h, ok, small, Put(new float[16 * h * h]), default, ok, Put(new float[b * 4 * h]), ok, ok));
        Assert.That(ex!.ParamName, Is.EqualTo("cPrev"));
        ex = Assert.Throws<ArgumentException>(() => K.CellForward(CellKind.Gru, b, h, ok, default, Put(new float[9 * h * h]), Put(new float[3 * h - 1]), ok, ok, ok, default));
        Assert.That(ex!.ParamName, Is.EqualTo("bHh"));
        ex = Assert.Throws<ArgumentException>(() => K.CellBackward(CellKind.Gru, b, h, true, small, Put(new float[9 * h * h]), ok, ok, ok, ok, default, default, ok, ok, ok, ok));
        Assert.That(ex!.ParamName, Is.EqualTo("dAhNext"));
        Assert.Throws<ArgumentOutOfRangeException>(() => K.CellForward((CellKind)2, b, h, ok, ok, ok, ok, ok, ok, ok, ok));
    }

    /// <summary>One row's float inputs of a step, widened: the two pre-activations as <see cref="RefCell"/> takes them.</summary>
    private sealed class StepInputs
    {
        public StepInputs(CellKind cell, int h, float[] w, float[] bHh, int folded, double[] hPrev, double[] cPrev, double[] x)
        {
            int gh = (int)cell * h;
            HPrev = hPrev;
            CPrev = cPrev;
            // x holds W_ih x + b_ih + the folded part of b_hh (all of it but a GRU's b_hn), so the cell's ax is x
            // and its ah is W_hh h' plus the b_hh columns not folded.
            Ax = x;
            Ah = new double[gh];
            AhMag = new double[gh];
            for (int k = 0; k < gh; k++)
            {
                double bias = k >= folded ? bHh[k] : 0;
                double sum = bias, mag = Math.Abs(bias);
                for (int p = 0; p < h; p++)
                {
                    sum += (double)w[k * h + p] * hPrev[p];
                    mag += Math.Abs((double)w[k * h + p] * hPrev[p]);
                }
                Ah[k] = sum;
                AhMag[k] = mag;
            }
        }

        public double[] HPrev { get; }

        public double[] CPrev { get; }

        public double[] Ax { get; }

        public double[] Ah { get; }

        /// <summary>Σ|W_hh h'| (+ |b_hn|) per gate row: what the GEMM's rounding scales with.</summary>
        public double[] AhMag { get; }
    }

    /// <summary>
    /// Forward error bounds per output, first order. Each gate's pre-activation a = x + W_hh h' (+ b_hn) carries
    /// the GEMM bound E_a = (H + 2)·u·(|x| + Σ|W_hh h'|); σ has slope ≤ 1/4 and tanh ≤ 1, and each adds its own
    /// rounding; the combination (h = n + z(h' − n), c = f c' + i g, h = o tanh c) adds the gates' errors times
    /// the factors they multiply, plus a rounding per operation. On CUDA the approximate tanh/exp add <paramref name="approx"/>
    /// per activation, times the same factors.
    /// </summary>
    private static (double[] H, double[] C, double[] Saved) ForwardBound(CellKind cell, StepInputs s, double[] gates, double[] hr, double[] cr, double approx)
    {
        int n = s.HPrev.Length;
        var eh = new double[n];
        var ec = new double[n];
        var es = new double[gates.Length];
        double Ea(int k) => (n + 2) * U * (Math.Abs(s.Ax[k]) + s.AhMag[k]);
        double ESig(int k) => Ea(k) / 4 + SigmoidRoundings * U + approx;
        double ETanh(int k, double value) => Ea(k) + TanhRoundings * U * Math.Abs(value) + approx;
        for (int u = 0; u < n; u++)
        {
            double hp = Math.Abs(s.HPrev[u]);
            switch (cell)
            {
                case CellKind.Elman:
                    eh[u] = ETanh(u, hr[u]);
                    break;
                case CellKind.Gru:
                {
                    double r = gates[u], z = gates[n + u], nn = gates[2 * n + u], hn = Math.Abs(gates[3 * n + u]);
                    double er = ESig(u), ez = ESig(n + u);
                    double ehn = (n + 2) * U * s.AhMag[2 * n + u];
                    // a_n = x_n + r·hn: x's rounding-free, r·hn's errors and the product and sum roundings.
                    double ean = er * hn + r * ehn + 2 * U * (Math.Abs(s.Ax[2 * n + u]) + r * hn);
                    double en = ean + TanhRoundings * U * Math.Abs(nn) + approx;
                    eh[u] = en * (1 + z) + ez * (hp + Math.Abs(nn)) + 3 * U * (hp + Math.Abs(nn) + Math.Abs(hr[u]));
                    es[u] = er;
                    es[n + u] = ez;
                    es[2 * n + u] = en;
                    es[3 * n + u] = ehn + U * hn;
                    break;
                }
                case CellKind.Lstm:
                {
                    double i = gates[u], f = gates[n + u], g = Math.Abs(gates[2 * n + u]), o = gates[3 * n + u];
                    double ei = ESig(u), ef = ESig(n + u), eg = ETanh(2 * n + u, g), eo = ESig(3 * n + u);
                    double cp = Math.Abs(s.CPrev[u]);
                    ec[u] = ef * cp + ei * g + eg * i + 3 * U * (f * cp + i * g);
                    double tc = Math.Abs(Math.Tanh(cr[u]));
                    eh[u] = eo * tc + o * (ec[u] + TanhRoundings * U * tc + approx) + U * Math.Abs(hr[u]);
                    es[u] = ei;
                    es[n + u] = ef;
                    es[2 * n + u] = eg;
                    es[3 * n + u] = eo;
                    break;
                }
            }
        }
        return (eh, ec, es);
    }

    /// <summary>
    /// Backward error bounds per output. Every output is dh (and, for an LSTM, the carried dc) times a product
    /// of saved factors. dh carries the GEMM bound <paramref name="dhRoundings"/>·u·Σ|terms|; the product chain
    /// adds <see cref="ChainRoundings"/> roundings of its magnitude (every factor by its absolute value, every
    /// 1 − x as 1 + |x|). An LSTM recomputes tanh(c) from c rounded to float: its error (|c| + 2)·u (+ approx)
    /// enters dc through 2|tanh c| and do directly.
    /// </summary>
    private static (double[] Gates, double[] Carry) BackwardBound(CellKind cell, StepInputs s, RefCell rc, double[] dhMag, double[] dcMag, double approx, int dhRoundings)
    {
        int n = s.HPrev.Length, sw = CellShapes.SavedWidth(cell, n);
        var gates = new double[sw];
        var (_, cr) = rc.Forward(s.Ax, s.Ah, s.HPrev, s.CPrev, gates);
        var eg = new double[rc.Gates * n];
        var ecarry = new double[n];
        double k = (dhRoundings + ChainRoundings) * U;
        for (int u = 0; u < n; u++)
        {
            double dh = dhMag[u];
            switch (cell)
            {
                case CellKind.Elman:
                {
                    double hv = Math.Tanh(s.Ax[u] + s.Ah[u]);
                    eg[u] = k * dh * (1 + hv * hv);
                    break;
                }
                case CellKind.Gru:
                {
                    double r = gates[u], z = gates[n + u], nn = Math.Abs(gates[2 * n + u]), hn = Math.Abs(gates[3 * n + u]);
                    double fn = (1 + z) * (1 + nn * nn);
                    eg[u] = k * dh * fn * hn * r * (1 + r);
                    eg[n + u] = k * dh * (Math.Abs(s.HPrev[u]) + nn) * z * (1 + z);
                    eg[2 * n + u] = k * dh * fn; // dAh_n = dAx_n·r ≤ this too, with r ≤ 1 and two roundings to spare
                    ecarry[u] = k * dh * z;
                    break;
                }
                case CellKind.Lstm:
                {
                    double i = gates[u], f = gates[n + u], g = Math.Abs(gates[2 * n + u]), o = gates[3 * n + u];
                    double c = Math.Abs(cr[u]), tc = Math.Abs(Math.Tanh(cr[u]));
                    double etc = (c + 2) * U + approx; // tanh of a rounded c, absolute
                    // dc = dh·o·(1 − tanh² c) + carryNext: the chain's roundings of its magnitude, and tanh's error.
                    double edc = k * (dh * o * (1 + tc * tc) + dcMag[u]) + dh * o * 2 * tc * etc;
                    eg[u] = edc * g * i * (1 + i);
                    eg[n + u] = edc * Math.Abs(s.CPrev[u]) * f * (1 + f);
                    eg[2 * n + u] = edc * i * (1 + g * g);
                    eg[3 * n + u] = (k * tc + etc) * dh * o * (1 + o);
                    ecarry[u] = edc * f;
                    break;
                }
            }
        }
        return (eg, ecarry);
    }

    /// <summary><see cref="DeviceFixture.AssertClose"/>, after writing the largest error and its share of the bound to the test output.</summary>
    private static void Check(float[] actual, double[] expected, Func<int, double> tolerance, string what)
    {
        double worst = 0, share = 0;
        for (int i = 0; i < Math.Min(actual.Length, expected.Length); i++)
        {
            double err = Math.Abs(actual[i] - expected[i]);
            worst = Math.Max(worst, err);
            if (err > 0)
                share = Math.Max(share, err / tolerance(i));
        }
        TestContext.Out.WriteLine($"{what}: largest error {worst:G3}, {share:P0} of its bound");
        AssertClose(actual, expected, tolerance, what);
    }

    private static double[] Row(float[] x, int row, int width) => x.Skip(row * width).Take(width).Select(v => (double)v).ToArray();
}
