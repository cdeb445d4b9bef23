using GpuRnn.Kernels;
using GpuRnn.Tests.Reference;
using NUnit.Framework;

namespace GpuRnn.Tests;

/// <summary>
/// Checks the double-precision reference against finite differences and hand-computed numbers,
/// so that it can be trusted as the oracle for the GPU engine's tests.
/// </summary>
[TestFixture]
public sealed class ReferenceSelfTests
{
    // Central differences in double: truncation ~eps^2 * f''' ~ 1e-10, rounding ~1e-16 / eps ~ 1e-11,
    // so eps = 1e-5 gives ~1e-10 absolute error on O(1) losses.
    private const double FdEps = 1e-5;
    // Allowed |analytic - numeric| = FdRelTol * max(|analytic|, |numeric|) + FdAbsTol. Typical gradients
    // here are 1e-3..1e-1, so a wrong factor, a missed term or a sign error (>= 1e-3 relative) fails.
    private const double FdRelTol = 1e-6;
    // Floor for elements whose true gradient is ~0 (unused token columns): above the ~1e-10 FD noise.
    private const double FdAbsTol = 1e-9;
    // Pure double arithmetic of a few operations: only rounding differs.
    private const double Exact = 1e-12;

    // ---------------------------------------------------------------- 1. RNN gradients

    [TestCase(1)]
    [TestCase(2)]
    public void RnnGradientsMatchFiniteDifferences(int layers)
    {
        const int V = 7, H = 5, B = 3, S = 4;
        var rng = new Random(1234 + layers);
        RefModel m = RandomModel(V, H, layers, rng);
        var (inputs, targets) = RandomBatch(V, B, S, rng);
        // A few ignored positions, including a whole time step of one row.
        targets[0, 1] = -1;
        targets[2, 3] = -1;
        targets[1, 0] = -1;
        double[][] h0 = RandomH0(layers, B, H, rng);

        RefResult r = RefRnn.ForwardBackward(m, inputs, targets, h0);
        Assert.That(RefRnn.Loss(m, inputs, targets, h0), Is.EqualTo(r.Loss).Within(Exact), "Loss() and ForwardBackward() disagree");

        AssertFiniteDifferences(m.Params, r.Grads, () => RefRnn.Loss(m, inputs, targets, h0), "");
    }

    // ---------------------------------------------------------------- 1b. every cell, one reference stack

    private static IEnumerable<TestCaseData> CellCases() =>
        from cell in new[] { CellKind.Elman, CellKind.Gru, CellKind.Lstm }
        from layers in new[] { 1, 2 }
        from padded in new[] { false, true }
        select new TestCaseData(cell, layers, padded);

    /// <summary>
    /// The language model of each cell, L = 1 and 2, from given h0 (and c0), against central differences.
    /// Padded: rows end after 2 and 0 of the 4 steps and hold their state; some targets at held steps stay
    /// counted, so their loss depends on the held state and its gradient must flow back through the held steps.
    /// </summary>
    [TestCaseSource(nameof(CellCases))]
    public void CellGradientsMatchFiniteDifferences(CellKind cell, int layers, bool padded)
    {
        const int V = 6, H = 4, B = 3, S = 4;
        var rng = new Random(4321 + ((int)cell * 10) + layers + (padded ? 100 : 0));
        RefModel m = RandomModel(V, H, layers, rng, cell);
        var (inputs, targets) = RandomBatch(V, B, S, rng);
        targets[0, 1] = -1;
        double[][] h0 = RandomH0(layers, B, H, rng);
        double[][]? c0 = cell == CellKind.Lstm ? RandomH0(layers, B, H, rng) : null;
        int[]? lengths = padded ? [S, 2, 0] : null;

        RefResult r = RefRnn.ForwardBackward(m, inputs, targets, h0, c0, lengths);
        Assert.That(RefRnn.Loss(m, inputs, targets, h0, c0, lengths), Is.EqualTo(r.Loss).Within(Exact), "Loss() and ForwardBackward() disagree");
        if (padded)
        {
            for (int k = 0; k < layers; k++)
                Assert.That(r.HFinal[k].Skip(2 * H), Is.EqualTo(h0[k].Skip(2 * H)), "a row of length 0 keeps its initial state");
        }
        AssertFiniteDifferences(m.Params, r.Grads, () => RefRnn.Loss(m, inputs, targets, h0, c0, lengths), $"{cell} L={layers} ");
    }

    /// <summary>
    /// One stack on a padded sequence (3 of 5 steps true) with a loss on the top outputs AND on every layer's final
    /// h and c (what a classifier and an encoder–decoder put there): the parameter gradients and the gradients
    /// of the initial h0, c0 (what an encoder receives from its decoder) against central differences.
    /// </summary>
    [TestCaseSource(nameof(CellCases))]
    public void StackStateGradientsMatchFiniteDifferences(CellKind cell, int layers, bool padded)
    {
        const int V = 5, H = 3, N = 5;
        var rng = new Random(99 + ((int)cell * 10) + layers + (padded ? 100 : 0));
        var p = RandomModel(V, H, layers, rng, cell).Params;
        int[] seq = [.. Enumerable.Range(0, N).Select(_ => rng.Next(V))];
        int? length = padded ? 3 : null;
        var h0 = RandomH0(layers, 1, H, rng);
        var c0 = RandomH0(layers, 1, H, rng);
        var wTop = RandomH0(N, 1, H, rng);   // loss weights on the top outputs
        var wH = RandomH0(layers, 1, H, rng); // … on each final h
        var wC = RandomH0(layers, 1, H, rng); // … on each final c
        var stack = new RefStack(cell, "rnn.", V, H, layers);
        double Loss()
        {
            var run = stack.Forward(p, seq, h0, c0, length);
            double sum = 0;
            for (int j = 0; j < H; j++)
            {
                for (int t = 0; t < N; t++)
                    sum += wTop[t][j] * run.TopOutput(t)[j];
                for (int k = 0; k < layers; k++)
                    sum += wH[k][j] * run.FinalH(k)[j] + wC[k][j] * run.FinalC(k)[j];
            }
            return sum;
        }

        var g = p.ToDictionary(kv => kv.Key, kv => new double[kv.Value.Length]);
        var (dH0, dC0) = stack.Backward(p, g, stack.Forward(p, seq, h0, c0, length), wTop, wH, wC);
        g.Remove("decoder.weight");
        g.Remove("decoder.bias");
        for (int k = 0; k < layers; k++)
        {
            g[$"h0_l{k}"] = dH0[k];
            g[$"c0_l{k}"] = dC0[k];
        }
        var values = g.Keys.ToDictionary(name => name, name => name.StartsWith("h0_") ? h0[name[^1] - '0'] : name.StartsWith("c0_") ? c0[name[^1] - '0'] : p[name]);
        if (cell != CellKind.Lstm)
        {
            // Without a cell state, c0 reaches nothing and the final c is 0: both gradients are exactly zero.
            for (int k = 0; k < layers; k++)
            {
                Assert.That(dC0[k], Is.All.EqualTo(0.0), "dc0 without a cell state");
                g.Remove($"c0_l{k}");
            }
        }
        AssertFiniteDifferences(values, g, Loss, $"{cell} L={layers} ");
    }

    /// <summary>
    /// The encoder–decoder of each cell: the encoder's only gradient arrives through the decoder's initial states
    /// (h, and c for an LSTM), so every encoder tensor checks those state gradients.
    /// </summary>
    [TestCase(CellKind.Gru, 1)]
    [TestCase(CellKind.Gru, 2)]
    [TestCase(CellKind.Lstm, 1)]
    [TestCase(CellKind.Lstm, 2)]
    [TestCase(CellKind.Elman, 2)]
    public void EncoderDecoderGradientsMatchFiniteDifferences(CellKind cell, int layers)
    {
        const int V = 6, H = 3;
        var rng = new Random(7 + ((int)cell * 10) + layers);
        var p = new Dictionary<string, double[]>();
        foreach (var (name, shape) in RefModel.StackLayout("encoder.rnn.", V, H, layers, cell)
            .Concat(RefModel.StackLayout("decoder.rnn.", V, H, layers, cell))
            .Append(("decoder.out.weight", [V, H])).Append(("decoder.out.bias", [V])))
        {
            p[name] = [.. Enumerable.Range(0, RefModel.Count(shape)).Select(_ => rng.NextDouble() - 0.5)];
        }
        int[] source = [4, 5, 1, 4], target = [1, 5];
        var (_, _, grads) = RefSeq2Seq.ForwardBackward(p, V, H, layers, source, target, 2, 3, cell);
        AssertFiniteDifferences(p, grads, () => RefSeq2Seq.ForwardBackward(p, V, H, layers, source, target, 2, 3, cell).Loss, $"{cell} L={layers} ");
    }

    private static IEnumerable<TestCaseData> BidirectionalCases() =>
        from cell in new[] { CellKind.Elman, CellKind.Gru, CellKind.Lstm }
        from layers in new[] { 1, 2 }
        select new TestCaseData(cell, layers);

    /// <summary>
    /// A bidirectional classifier (PyTorch's bidirectional=True; the decoder reads [forward final; reverse final]):
    /// every tensor, both directions and the 2H-wide layer above, against central differences.
    /// </summary>
    [TestCaseSource(nameof(BidirectionalCases))]
    public void BidirectionalClassifierGradientsMatchFiniteDifferences(CellKind cell, int layers)
    {
        const int V = 6, H = 3, C = 3;
        var rng = new Random(17 + ((int)cell * 10) + layers);
        var p = new Dictionary<string, double[]>();
        foreach (var (name, shape) in RefModel.StackLayout("rnn.", V, H, layers, cell, bidirectional: true)
            .Append(("decoder.weight", [C, 2 * H])).Append(("decoder.bias", [C])))
        {
            p[name] = [.. Enumerable.Range(0, RefModel.Count(shape)).Select(_ => rng.NextDouble() - 0.5)];
        }
        int[] seq = [4, 1, 5, 2];
        var (_, grads, _) = RefClassifier.ForwardBackward(p, V, H, layers, C, seq, 1, cell, bidirectional: true);
        AssertFiniteDifferences(p, grads, () => RefClassifier.ForwardBackward(p, V, H, layers, C, seq, 1, cell, bidirectional: true).Loss, $"{cell} L={layers} ");
    }

    /// <summary>
    /// An encoder–decoder with a bidirectional encoder (decoder layer k starts from the sum of encoder layer k's two
    /// final states, h and c): every tensor against central differences.
    /// </summary>
    [TestCaseSource(nameof(BidirectionalCases))]
    public void BidirectionalEncoderGradientsMatchFiniteDifferences(CellKind cell, int layers)
    {
        const int V = 6, H = 3;
        var rng = new Random(27 + ((int)cell * 10) + layers);
        var p = new Dictionary<string, double[]>();
        foreach (var (name, shape) in RefModel.StackLayout("encoder.rnn.", V, H, layers, cell, bidirectional: true)
            .Concat(RefModel.StackLayout("decoder.rnn.", V, H, layers, cell))
            .Append(("decoder.out.weight", [V, H])).Append(("decoder.out.bias", [V])))
        {
            p[name] = [.. Enumerable.Range(0, RefModel.Count(shape)).Select(_ => rng.NextDouble() - 0.5)];
        }
        int[] source = [4, 5, 1, 4], target = [1, 5];
        var (_, _, grads) = RefSeq2Seq.ForwardBackward(p, V, H, layers, source, target, 2, 3, cell, bidirectional: true);
        AssertFiniteDifferences(p, grads, () => RefSeq2Seq.ForwardBackward(p, V, H, layers, source, target, 2, 3, cell, bidirectional: true).Loss, $"{cell} L={layers} ");
    }

    /// <summary>
    /// The reverse direction reads the sequence backwards and nothing else: reversing a one-layer bidirectional
    /// classifier's input and swapping the two directions' weights (and the decoder's halves) gives the same logits.
    /// </summary>
    [Test]
    public void ReversingTheInputSwapsTheDirections()
    {
        const int V = 6, H = 3, C = 2;
        var rng = new Random(5);
        var p = new Dictionary<string, double[]>();
        foreach (var (name, shape) in RefModel.StackLayout("rnn.", V, H, 1, CellKind.Gru, bidirectional: true)
            .Append(("decoder.weight", [C, 2 * H])).Append(("decoder.bias", [C])))
        {
            p[name] = [.. Enumerable.Range(0, RefModel.Count(shape)).Select(_ => rng.NextDouble() - 0.5)];
        }
        var swapped = p.ToDictionary(kv => kv.Key, kv => kv.Key.EndsWith("_reverse", StringComparison.Ordinal) ? p[kv.Key[..^"_reverse".Length]]
            : kv.Key.StartsWith("rnn.", StringComparison.Ordinal) ? p[kv.Key + "_reverse"] : kv.Value);
        swapped["decoder.weight"] = [.. Enumerable.Range(0, C * 2 * H).Select(i => p["decoder.weight"][(i / (2 * H) * 2 * H) + ((i % (2 * H)) + H) % (2 * H)])];
        int[] seq = [4, 1, 5, 2, 2];
        var a = RefClassifier.ForwardBackward(p, V, H, 1, C, seq, 0, CellKind.Gru, bidirectional: true).Logits;
        var b = RefClassifier.ForwardBackward(swapped, V, H, 1, C, [.. seq.Reverse()], 0, CellKind.Gru, bidirectional: true).Logits;
        Assert.That(b, Is.EqualTo(a).Within(Exact).AsCollection);
    }

    /// <summary>
    /// One step of a GRU and of an LSTM with H = 1, written out by hand from DESIGN.md §2, so the gate order
    /// ([r; z; n], [i; f; g; o]), the place of b_hn and the state update are pinned (finite differences cannot
    /// tell a consistently misplaced gate).
    /// </summary>
    [Test]
    public void HandComputedGatedSteps()
    {
        static double Sig(double a) => 1 / (1 + Math.Exp(-a));
        // GRU, V = 2, token 1, h0 = 0.3: rows of W_ih [3, 2], W_hh [3, 1], biases [3] in the order r, z, n.
        var gru = new RefModel(2, 1, 1, CellKind.Gru);
        gru.Params["rnn.weight_ih_l0"] = [0.1, 0.2, -0.3, 0.4, 0.5, -0.6];
        gru.Params["rnn.weight_hh_l0"] = [0.7, -0.8, 0.9];
        gru.Params["rnn.bias_ih_l0"] = [0.01, 0.02, 0.03];
        gru.Params["rnn.bias_hh_l0"] = [-0.04, 0.05, -0.06];
        double h0 = 0.3;
        double r = Sig(0.2 + 0.01 + 0.7 * h0 - 0.04);
        double z = Sig(0.4 + 0.02 - 0.8 * h0 + 0.05);
        double n = Math.Tanh(-0.6 + 0.03 + r * (0.9 * h0 - 0.06));
        double expected = (1 - z) * n + z * h0;
        var rg = RefRnn.ForwardBackward(gru, new[,] { { 1 } }, new[,] { { 0 } }, [[h0]]);
        Assert.That(rg.HFinal[0][0], Is.EqualTo(expected).Within(Exact), "GRU h");

        // LSTM, token 0, h0 = -0.2, c0 = 0.5: rows in the order i, f, g, o.
        var lstm = new RefModel(2, 1, 1, CellKind.Lstm);
        lstm.Params["rnn.weight_ih_l0"] = [0.1, 9, 0.2, 9, 0.3, 9, 0.4, 9]; // column 1 is never read
        lstm.Params["rnn.weight_hh_l0"] = [0.5, -0.6, 0.7, -0.8];
        lstm.Params["rnn.bias_ih_l0"] = [0.01, 0.02, 0.03, 0.04];
        lstm.Params["rnn.bias_hh_l0"] = [0.05, 0.06, 0.07, 0.08];
        double hp = -0.2, cp = 0.5;
        double i = Sig(0.1 + 0.01 + 0.05 + 0.5 * hp), f = Sig(0.2 + 0.02 + 0.06 - 0.6 * hp);
        double gg = Math.Tanh(0.3 + 0.03 + 0.07 + 0.7 * hp), o = Sig(0.4 + 0.04 + 0.08 - 0.8 * hp);
        double c = f * cp + i * gg;
        var rl = RefRnn.ForwardBackward(lstm, new[,] { { 0 } }, new[,] { { 1 } }, [[hp]], [[cp]]);
        Assert.That(rl.CFinal[0][0], Is.EqualTo(c).Within(Exact), "LSTM c");
        Assert.That(rl.HFinal[0][0], Is.EqualTo(o * Math.Tanh(c)).Within(Exact), "LSTM h");
    }

    [Test]
    public void IgnoredTargetsAddNoLossAndNoGradient()
    {
        const int V = 7, H = 5, L = 2, B = 3, S = 4;
        var rng = new Random(77);
        RefModel m = RandomModel(V, H, L, rng);
        var (inputs, targets) = RandomBatch(V, B, S, rng);
        double[][] h0 = RandomH0(L, B, H, rng);

        // Ignore every target of the last step: the last step's output then influences nothing,
        // so the decoder gradient must equal that of the window cut one step short.
        var masked = (int[,])targets.Clone();
        for (int b = 0; b < B; b++) masked[b, S - 1] = -1;
        RefResult full = RefRnn.ForwardBackward(m, inputs, masked, h0);
        RefResult cut = RefRnn.ForwardBackward(m, Slice(inputs, 0, S - 1), Slice(targets, 0, S - 1), h0);

        Assert.That(full.Loss, Is.EqualTo(cut.Loss).Within(Exact));
        foreach (string name in m.Params.Keys)
        {
            Assert.That(full.Grads[name], Is.EqualTo(cut.Grads[name]).Within(Exact), name);
        }
    }

    [Test]
    public void LossIsMeanCrossEntropyOfTimeMajorLogits()
    {
        const int V = 7, H = 5, L = 2, B = 3, S = 4;
        var rng = new Random(5);
        RefModel m = RandomModel(V, H, L, rng);
        var (inputs, targets) = RandomBatch(V, B, S, rng);
        targets[1, 2] = -1;
        RefResult r = RefRnn.ForwardBackward(m, inputs, targets);

        Assert.That(r.Logits, Has.Length.EqualTo(S * B * V));
        double sum = 0;
        int count = 0;
        for (int t = 0; t < S; t++)
        {
            for (int b = 0; b < B; b++)
            {
                int y = targets[b, t];
                if (y < 0) continue;
                int off = (t * B + b) * V; // time-major row
                double lse = Math.Log(Enumerable.Range(0, V).Sum(v => Math.Exp(r.Logits[off + v])));
                sum += lse - r.Logits[off + y];
                count++;
            }
        }
        Assert.That(r.Loss, Is.EqualTo(sum / count).Within(Exact));
    }

    [Test]
    public void HandComputedTwoLayerForward()
    {
        // V = 2, H = 1, L = 2: every matrix is tiny, so the recurrence can be written out by hand.
        var m = new RefModel(2, 1, 2);
        m.Params["rnn.weight_ih_l0"][0] = 0.5;  // [1, 2]
        m.Params["rnn.weight_ih_l0"][1] = -0.3;
        m.Params["rnn.weight_hh_l0"][0] = 0.8;
        m.Params["rnn.bias_ih_l0"][0] = 0.1;
        m.Params["rnn.bias_hh_l0"][0] = -0.2;
        m.Params["rnn.weight_ih_l1"][0] = 1.2;
        m.Params["rnn.weight_hh_l1"][0] = -0.7;
        m.Params["rnn.bias_ih_l1"][0] = 0.05;
        m.Params["rnn.bias_hh_l1"][0] = 0.15;
        m.Params["decoder.weight"][0] = 1.5;     // [2, 1]
        m.Params["decoder.weight"][1] = -1.0;
        m.Params["decoder.bias"][0] = 0.0;
        m.Params["decoder.bias"][1] = 0.2;
        double[][] h0 = [[0.25], [-0.4]];

        // Tokens 0 then 1, targets 1 then 0.
        double a1 = Math.Tanh(0.5 + 0.1 - 0.2 + 0.8 * 0.25);
        double b1 = Math.Tanh(1.2 * a1 + 0.05 + 0.15 - 0.7 * -0.4);
        double a2 = Math.Tanh(-0.3 + 0.1 - 0.2 + 0.8 * a1);
        double b2 = Math.Tanh(1.2 * a2 + 0.05 + 0.15 - 0.7 * b1);
        static double Ce(double z0, double z1, int y) => Math.Log(Math.Exp(z0) + Math.Exp(z1)) - (y == 0 ? z0 : z1);
        double expected = (Ce(1.5 * b1, -b1 + 0.2, 1) + Ce(1.5 * b2, -b2 + 0.2, 0)) / 2;

        RefResult r = RefRnn.ForwardBackward(m, new[,] { { 0, 1 } }, new[,] { { 1, 0 } }, h0);
        Assert.That(r.Loss, Is.EqualTo(expected).Within(Exact));
        Assert.That(r.HFinal[0][0], Is.EqualTo(a2).Within(Exact));
        Assert.That(r.HFinal[1][0], Is.EqualTo(b2).Within(Exact));
        Assert.That(r.Logits, Is.EqualTo(new[] { 1.5 * b1, -b1 + 0.2, 1.5 * b2, -b2 + 0.2 }).Within(Exact));
    }

    [Test]
    public void FinalStateCarriesAcrossWindows()
    {
        const int V = 7, H = 5, L = 2, B = 3, S = 4;
        var rng = new Random(9);
        RefModel m = RandomModel(V, H, L, rng);
        var (inputs, targets) = RandomBatch(V, B, S, rng);
        double[][] h0 = RandomH0(L, B, H, rng);

        RefResult whole = RefRnn.ForwardBackward(m, inputs, targets, h0);
        RefResult first = RefRnn.ForwardBackward(m, Slice(inputs, 0, 2), Slice(targets, 0, 2), h0);
        RefResult second = RefRnn.ForwardBackward(m, Slice(inputs, 2, 2), Slice(targets, 2, 2), first.HFinal);
        for (int k = 0; k < L; k++)
        {
            Assert.That(second.HFinal[k], Is.EqualTo(whole.HFinal[k]).Within(Exact), $"layer {k}");
        }
        // With all targets counted and equal halves, the whole window's loss is the mean of the halves.
        Assert.That(whole.Loss, Is.EqualTo((first.Loss + second.Loss) / 2).Within(Exact));
    }

    [Test]
    public void LayoutFromFloatsAndClone()
    {
        var layout = RefModel.Layout(7, 5, 2);
        Assert.That(layout.Select(x => x.Name), Is.EqualTo(new[]
        {
            "rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0",
            "rnn.weight_ih_l1", "rnn.weight_hh_l1", "rnn.bias_ih_l1", "rnn.bias_hh_l1",
            "decoder.weight", "decoder.bias",
        }));
        Assert.That(layout[0].Shape, Is.EqualTo(new[] { 5, 7 }));
        Assert.That(layout[4].Shape, Is.EqualTo(new[] { 5, 5 }));
        Assert.That(layout[8].Shape, Is.EqualTo(new[] { 7, 5 }));
        Assert.That(layout[9].Shape, Is.EqualTo(new[] { 7 }));

        var floats = layout.ToDictionary(x => x.Name, x => Enumerable.Range(0, x.Shape.Aggregate(1, (a, d) => a * d)).Select(i => 0.5f * i).ToArray());
        RefModel m = RefModel.FromFloats(7, 5, 2, floats);
        Assert.That(m.Params["decoder.weight"][3], Is.EqualTo(1.5));
        RefModel c = m.Clone();
        c.Params["decoder.weight"][3] = -1;
        Assert.That(m.Params["decoder.weight"][3], Is.EqualTo(1.5), "Clone must not share arrays");

        floats.Remove("decoder.bias");
        Assert.Throws<ArgumentException>(() => RefModel.FromFloats(7, 5, 2, floats));
    }

    // ---------------------------------------------------------------- 2. softmax cross-entropy

    [Test]
    public void SoftmaxCrossEntropyGradientMatchesFiniteDifferences()
    {
        const int R = 4, V = 6;
        var rng = new Random(42);
        double[] logits = Enumerable.Range(0, R * V).Select(_ => 4 * (rng.NextDouble() - 0.5)).ToArray(); // [R, V]
        int[] targets = [3, -1, 0, 5];
        const double scale = 1.0 / 3; // mean over the three counted rows

        var (rowLoss, dLogits) = RefOps.SoftmaxCrossEntropy(logits, R, V, targets, scale);
        Assert.That(rowLoss[1], Is.EqualTo(0.0), "ignored row has no loss");
        Assert.That(dLogits.Skip(V).Take(V), Is.All.EqualTo(0.0), "ignored row has no gradient");

        double Objective() => scale * RefOps.SoftmaxCrossEntropy(logits, R, V, targets, scale).RowLoss.Sum();
        AssertFiniteDifferences(new() { ["dlogits"] = logits }, new() { ["dlogits"] = dLogits }, Objective, "");
    }

    [Test]
    public void SoftmaxCrossEntropyIsStableForHugeLogits()
    {
        double[] logits = [1000, 1001, 999]; // naive exp() overflows to infinity
        var (rowLoss, dLogits) = RefOps.SoftmaxCrossEntropy(logits, 1, 3, [0], 1.0);
        double lse = 1001 + Math.Log(Math.Exp(-1) + 1 + Math.Exp(-2)); // shifted by the maximum by hand
        Assert.That(rowLoss[0], Is.EqualTo(lse - 1000).Within(Exact));
        Assert.That(dLogits, Has.None.NaN);
        Assert.That(dLogits.Sum(), Is.EqualTo(0.0).Within(Exact), "softmax - onehot sums to zero");
        Assert.That(dLogits[1], Is.EqualTo(Math.Exp(1001 - lse)).Within(Exact));
    }

    [Test]
    public void GemmWithTransposesAndColumnSums()
    {
        double[] a = [1, 2, 3, 4, 5, 6];    // A [2, 3]
        double[] b = [7, 8, 9, 10, 11, 12]; // B [3, 2]
        double[] c = [1, 1, 1, 1];          // C [2, 2]
        // A*B = [[58, 64], [139, 154]]; 2*A*B + 0.5*C:
        double[] expected = [116.5, 128.5, 278.5, 308.5];
        Assert.That(RefOps.Gemm(2, 2, 3, false, false, 2, a, b, 0.5, c), Is.EqualTo(expected).Within(Exact));

        double[] aT = [1, 4, 2, 5, 3, 6];    // A^T stored [3, 2]
        double[] bT = [7, 9, 11, 8, 10, 12]; // B^T stored [2, 3]
        Assert.That(RefOps.Gemm(2, 2, 3, true, true, 2, aT, bT, 0.5, c), Is.EqualTo(expected).Within(Exact));
        Assert.That(RefOps.Gemm(2, 2, 3, true, false, 2, aT, b, 0.5, c), Is.EqualTo(expected).Within(Exact));
        Assert.That(RefOps.Gemm(2, 2, 3, false, true, 2, a, bT, 0.5, c), Is.EqualTo(expected).Within(Exact));
        // beta = 0 must not read C, as in BLAS.
        Assert.That(RefOps.Gemm(2, 2, 3, false, false, 1, a, b, 0, [double.NaN, 0, 0, 0]), Is.EqualTo(new double[] { 58, 64, 139, 154 }));
        Assert.That(c, Is.EqualTo(new double[] { 1, 1, 1, 1 }), "C is input only");

        Assert.That(RefOps.ColumnSums(a, 2, 3), Is.EqualTo(new double[] { 5, 7, 9 }));
    }

    // ---------------------------------------------------------------- 3. optimizers and clipping

    [Test]
    public void AdamFirstStepMovesByLrTimesSignAndSecondStepByHand()
    {
        const double lr = 0.01;
        RefModel m = TinyModel(1.0);
        var grads = Grads(m, i => i % 3 == 0 ? 0.0 : (i % 2 == 0 ? 0.5 : -2e-3));
        var opt = new RefOptimizer(RefOptimizerKind.Adam, lr);
        opt.Step(m, grads);
        foreach (var (name, p) in m.Params)
        {
            for (int i = 0; i < p.Length; i++)
            {
                double g = grads[name][i];
                // m/(1-b1) = g and sqrt(v/(1-b2)) = |g|, so the step is lr*g/(|g| + eps) ~ lr*sign(g).
                Assert.That(p[i], Is.EqualTo(1.0 - lr * g / (Math.Abs(g) + 1e-8)).Within(Exact), $"{name}[{i}]");
                Assert.That(p[i], Is.EqualTo(1.0 - lr * Math.Sign(g)).Within(1e-7), $"{name}[{i}]");
            }
        }
        Assert.That(opt.State("exp_avg")["decoder.bias"][1], Is.EqualTo(0.1 * grads["decoder.bias"][1]).Within(Exact));
        double gb = grads["decoder.bias"][1];
        Assert.That(opt.State("exp_avg_sq")["decoder.bias"][1], Is.EqualTo(0.001 * gb * gb).Within(Exact));

        // Two steps on one value, g = 0.5 then -0.25; the number was worked out separately:
        // m = 0.02, v = 0.00031225, p = 0.99 - (0.01/0.19) * 0.02 / (sqrt(v)/sqrt(0.001999) + 1e-8).
        RefModel s = TinyModel(1.0);
        var adam = new RefOptimizer(RefOptimizerKind.Adam, lr);
        adam.Step(s, Grads(s, _ => 0.5));
        adam.Step(s, Grads(s, _ => -0.25));
        Assert.That(s.Params["decoder.bias"][0], Is.EqualTo(0.9873366298707846).Within(Exact));
        Assert.That(adam.State("exp_avg")["decoder.bias"][0], Is.EqualTo(0.02).Within(Exact));
        Assert.That(adam.State("exp_avg_sq")["decoder.bias"][0], Is.EqualTo(0.00031225).Within(Exact));
    }

    [Test]
    public void SgdPlainAndWithMomentum()
    {
        RefModel plain = TinyModel(1.0);
        var sgd = new RefOptimizer(RefOptimizerKind.Sgd, 0.1);
        sgd.Step(plain, Grads(plain, _ => 2.0));
        Assert.That(plain.Params["rnn.weight_hh_l0"][0], Is.EqualTo(0.8).Within(Exact));
        Assert.That(sgd.State("momentum_buffer"), Is.Empty, "no buffer without momentum");

        // lr 0.1, momentum 0.9; g = 1 then 2. Step 1: buf = g = 1, p = 1 - 0.1 = 0.9.
        // Step 2: buf = 0.9*1 + 2 = 2.9, p = 0.9 - 0.29 = 0.61.
        RefModel m = TinyModel(1.0);
        var opt = new RefOptimizer(RefOptimizerKind.Sgd, 0.1, momentum: 0.9);
        opt.Step(m, Grads(m, _ => 1.0));
        Assert.That(m.Params["decoder.weight"][1], Is.EqualTo(0.9).Within(Exact));
        Assert.That(opt.State("momentum_buffer")["decoder.weight"][1], Is.EqualTo(1.0).Within(Exact));
        opt.Step(m, Grads(m, _ => 2.0));
        Assert.That(m.Params["decoder.weight"][1], Is.EqualTo(0.61).Within(Exact));
        Assert.That(opt.State("momentum_buffer")["decoder.weight"][1], Is.EqualTo(2.9).Within(Exact));
    }

    [Test]
    public void AdagradFirstTwoStepsClosedForm()
    {
        // sum = g^2 after one step, so the step is lr*g/(|g| + 1e-10); after two equal gradients
        // sum = 2g^2 and the second step is lr/sqrt(2).
        RefModel m = TinyModel(1.0);
        var opt = new RefOptimizer(RefOptimizerKind.Adagrad, 0.1);
        opt.Step(m, Grads(m, _ => -3.0));
        Assert.That(m.Params["rnn.bias_ih_l0"][0], Is.EqualTo(1.0 + 0.1 * 3 / (3 + 1e-10)).Within(Exact));
        Assert.That(opt.State("sum")["rnn.bias_ih_l0"][0], Is.EqualTo(9.0).Within(Exact));
        opt.Step(m, Grads(m, _ => -3.0));
        Assert.That(m.Params["rnn.bias_ih_l0"][0], Is.EqualTo(1.1 + 0.1 / Math.Sqrt(2)).Within(1e-10));
    }

    [Test]
    public void RmsPropFirstTwoStepsClosedForm()
    {
        // square_avg = 0.01 g^2, so step 1 is lr*g/(0.1|g| + 1e-8) ~ 10*lr*sign(g).
        RefModel m = TinyModel(1.0);
        var opt = new RefOptimizer(RefOptimizerKind.RmsProp, 0.01);
        opt.Step(m, Grads(m, _ => 0.5));
        Assert.That(m.Params["decoder.bias"][0], Is.EqualTo(1.0 - 0.01 * 0.5 / (0.1 * 0.5 + 1e-8)).Within(Exact));
        Assert.That(opt.State("square_avg")["decoder.bias"][0], Is.EqualTo(0.0025).Within(Exact));
        // Step 2 with g = -0.25: square_avg = 0.99*0.0025 + 0.01*0.0625 = 0.003100.
        opt.Step(m, Grads(m, _ => -0.25));
        Assert.That(m.Params["decoder.bias"][0], Is.EqualTo(0.9449013374421751).Within(Exact));
        Assert.Throws<ArgumentException>(() => opt.State("exp_avg"));
    }

    [Test]
    public void ClipGradNormAndValue()
    {
        var grads = new Dictionary<string, double[]> { ["a"] = [3.0], ["b"] = [4.0] };
        Assert.That(RefClip.ClipGradNorm(grads, 10.0), Is.EqualTo(5.0).Within(Exact));
        Assert.That(grads["a"][0], Is.EqualTo(3.0), "below the limit nothing changes");

        Assert.That(RefClip.ClipGradNorm(grads, 1.0), Is.EqualTo(5.0).Within(Exact));
        double coef = 1.0 / (5.0 + 1e-6);
        Assert.That(grads["a"][0], Is.EqualTo(3 * coef).Within(Exact));
        Assert.That(grads["b"][0], Is.EqualTo(4 * coef).Within(Exact));

        var g2 = new Dictionary<string, double[]> { ["a"] = [-3.0, 0.5], ["b"] = [4.0] };
        RefClip.ClipGradValue(g2, 1.0);
        Assert.That(g2["a"], Is.EqualTo(new[] { -1.0, 0.5 }));
        Assert.That(g2["b"], Is.EqualTo(new[] { 1.0 }));
    }

    // ---------------------------------------------------------------- 4. stream batching

    [Test]
    public void StreamWindowsSmallExample()
    {
        int[] ids = Enumerable.Range(0, 21).ToArray(); // n = 21 / 2 = 10, token 20 dropped
        var w = RefStream.Windows(ids, 2, 4);
        Assert.That(w, Has.Count.EqualTo(3));
        Assert.That(w[0].Inputs, Is.EqualTo(new[,] { { 0, 1, 2, 3 }, { 10, 11, 12, 13 } }));
        Assert.That(w[0].Targets, Is.EqualTo(new[,] { { 1, 2, 3, 4 }, { 11, 12, 13, 14 } }));
        Assert.That(w[1].Inputs, Is.EqualTo(new[,] { { 4, 5, 6, 7 }, { 14, 15, 16, 17 } }));
        Assert.That(w[1].Targets, Is.EqualTo(new[,] { { 5, 6, 7, 8 }, { 15, 16, 17, 18 } }));
        Assert.That(w[2].Inputs, Is.EqualTo(new[,] { { 8 }, { 18 } }));
        Assert.That(w[2].Targets, Is.EqualTo(new[,] { { 9 }, { 19 } }));
        Assert.That(w[2].Inputs.GetLength(1), Is.EqualTo(1));
    }

    // ---------------------------------------------------------------- helpers

    /// <summary>
    /// Central differences of <paramref name="loss"/> w.r.t. every element of every tensor in <paramref name="grads"/>
    /// (perturbing the same-named array of <paramref name="values"/>) against the analytic gradient.
    /// </summary>
    private static void AssertFiniteDifferences(Dictionary<string, double[]> values, Dictionary<string, double[]> grads, Func<double> loss, string what)
    {
        foreach (var (name, g) in grads)
        {
            double[] p = values[name];
            Assert.That(g, Has.Length.EqualTo(p.Length), name);
            // Guard against a vacuous pass: every tensor must receive a real gradient somewhere.
            Assert.That(g.Max(Math.Abs), Is.GreaterThan(1e-4), $"{what}{name} gradient is (nearly) all zero");
            for (int i = 0; i < p.Length; i++)
            {
                double saved = p[i];
                p[i] = saved + FdEps;
                double plus = loss();
                p[i] = saved - FdEps;
                double minus = loss();
                p[i] = saved;

                double numeric = (plus - minus) / (2 * FdEps);
                double tol = FdRelTol * Math.Max(Math.Abs(numeric), Math.Abs(g[i])) + FdAbsTol;
                Assert.That(g[i], Is.EqualTo(numeric).Within(tol), $"{what}{name}[{i}]");
            }
        }
    }

    private static RefModel RandomModel(int vocab, int hidden, int layers, Random rng, CellKind cell = CellKind.Elman)
    {
        var m = new RefModel(vocab, hidden, layers, cell);
        foreach (var (name, _) in RefModel.Layout(vocab, hidden, layers, cell))
        {
            double[] p = m.Params[name];
            for (int i = 0; i < p.Length; i++) p[i] = rng.NextDouble() - 0.5; // uniform(-0.5, 0.5)
        }
        return m;
    }

    private static (int[,] Inputs, int[,] Targets) RandomBatch(int vocab, int batch, int steps, Random rng)
    {
        var inputs = new int[batch, steps];  // [B, S]
        var targets = new int[batch, steps]; // [B, S]
        for (int b = 0; b < batch; b++)
        {
            for (int t = 0; t < steps; t++)
            {
                inputs[b, t] = rng.Next(vocab);
                targets[b, t] = rng.Next(vocab);
            }
        }
        return (inputs, targets);
    }

    private static double[][] RandomH0(int layers, int batch, int hidden, Random rng) =>
        Enumerable.Range(0, layers)
            .Select(_ => Enumerable.Range(0, batch * hidden).Select(_ => rng.NextDouble() - 0.5).ToArray()) // [B*H]
            .ToArray();

    /// <summary>Columns [start, start+count) of a [B, S] array.</summary>
    private static int[,] Slice(int[,] x, int start, int count)
    {
        var r = new int[x.GetLength(0), count];
        for (int b = 0; b < x.GetLength(0); b++)
            for (int t = 0; t < count; t++)
                r[b, t] = x[b, start + t];
        return r;
    }

    /// <summary>V = 2, H = 1, L = 1: nine scalars, every parameter set to <paramref name="value"/>.</summary>
    private static RefModel TinyModel(double value)
    {
        var m = new RefModel(2, 1, 1);
        foreach (double[] p in m.Params.Values) Array.Fill(p, value);
        return m;
    }

    /// <summary>A gradient for every parameter, element i (counted across all tensors in layout order) = f(i).</summary>
    private static Dictionary<string, double[]> Grads(RefModel m, Func<int, double> f)
    {
        var grads = new Dictionary<string, double[]>();
        int n = 0;
        foreach (var (name, p) in m.Params)
        {
            var g = new double[p.Length];
            for (int i = 0; i < g.Length; i++) g[i] = f(n++);
            grads[name] = g;
        }
        return grads;
    }
}
