using System.Text.Json;
using GpuRnn.Checkpoints;
using GpuRnn.Cli;
using GpuRnn.Kernels;
using GpuRnn.Tests.Reference;
using Microsoft.ML.OnnxRuntime;
using NUnit.Framework;

namespace GpuRnn.Tests;

/// <summary>
/// The exported ONNX model run in ONNX Runtime against the engine (<see cref="Predictor"/>) and the double-precision
/// reference, on padded batches of different lengths, for every cell and mode. Without a loadable ONNX Runtime the tests
/// are skipped (Assert.Ignore), never passed.
/// </summary>
[TestFixtureSource(typeof(TestDevices), nameof(TestDevices.Specs))]
public sealed class OnnxExportTests(string spec) : DeviceFixture(spec)
{
    /// <summary>
    /// Bound of a float32 forward against the double reference, per element: Atol·max|ref| + Rtol·|ref|. The one-hot input
    /// is exact in both (a gather, or a product by an identity/one-hot, either direction's); each pre-activation is a dot
    /// product of at most 2H + 2 ≤ 12 float terms (a layer above a bidirectional one reads 2H, h̃ reads [c; h]; relative
    /// error ≤ 12·u ≈ 7e-7 of Σ|terms|, u = 2^-24), the activations, the softmax and the context's S-term sums add a few
    /// u, and the error carried through ≤ 8 steps and 2 layers does not grow (|W| ≤ 1/√H per entry, |tanh'|, |σ'| ≤ 1):
    /// about 8·7e-7 ≈ 6e-6 of the logits' scale, bounded by 1e-5 — the same bound as the engine's whole-step tests (TrainerTests).
    /// Engine against ONNX Runtime: the sum of their two bounds.
    /// </summary>
    private const double Rtol = 1e-5, Atol = 1e-5;

    /// <summary>
    /// Bound of ONNX Runtime's attention weights A ∈ [0, 1] against the double reference: |ΔA_j| ≤ 2·max|Δs| through the
    /// softmax (as for the probabilities), and a score s_j = Σ_k q_k·m_jk sums H products with |q_k| ≤ √H (dot: a state,
    /// ≤ 1; general: H states times |W_a| ≤ 1/√H) and |m_jk| ≤ 2 (a bidirectional memory sums two states), each factor
    /// within the states' bound δ = 2·(Atol + Rtol) (two summed states): |Δs| ≤ H·(2 + √H)·δ. Bahdanau's score
    /// v·tanh(W_q s + W_k m_j) (|v|, |W| ≤ 1/√H per entry, |tanh'| ≤ 1) is within H·(1/√H)·(√H·δ + 2√H·δ) = 3H·δ, less.
    /// </summary>
    private static double WeightTolerance(int hidden) => 2 * hidden * (2 + Math.Sqrt(hidden)) * 2 * (Atol + Rtol);

    private const int Pad = 0; // what a caller puts past a sequence's end in the ONNX inputs (the engine reads −1: no input)

    private string dir = null!;

    [SetUp]
    public void MakeFolder()
    {
        dir = Path.Combine(Path.GetTempPath(), "gpurnn-onnx-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
    }

    [TearDown]
    public void RemoveFolder() => Directory.Delete(dir, recursive: true);

    /// <summary>
    /// Language model on a padded batch of lines (lengths 5, 1, 3, 2): logits at every true position and h_n (c_n) after
    /// each line's last token. V ≤ G exports the one-hot input as an identity table, V > G as W_ihᵀ: both are covered.
    /// </summary>
    [TestCase(CellKind.Elman, 1, 3, 17)]
    [TestCase(CellKind.Elman, 2, 9, 7)]
    [TestCase(CellKind.Gru, 1, 3, 17)]
    [TestCase(CellKind.Gru, 2, 5, 9)]
    [TestCase(CellKind.Lstm, 1, 3, 17)]
    [TestCase(CellKind.Lstm, 2, 4, 9)]
    public void LanguageModelMatchesTheEngine(CellKind cell, int layers, int hidden, int vocab)
    {
        var config = new ModelConfig(vocab, hidden, layers, Cell: cell);
        var c = Save(config, DataMode.Lines, seed: 3);
        int[][] seqs = Sequences([5, 1, 3, 2], vocab, seed: 5);
        int steps = 5, batch = seqs.Length;

        using var model = c.CreateModel(Device);
        using var predictor = new Predictor(model);
        var engine = predictor.Logits(EngineWindow(seqs, steps)); // [T·B, V]

        using var session = Session(c);
        var inputs = new Dictionary<string, OrtValue>
        {
            [OnnxExport.InputIds] = Ids(seqs, steps),
            [OnnxExport.Lengths] = Lengths(seqs),
            [OnnxExport.InitialH] = Zeros(layers, batch, hidden),
        };
        if (cell == CellKind.Lstm)
            inputs[OnnxExport.InitialC] = Zeros(layers, batch, hidden);
        var onnx = Run(session, inputs);

        var p = Doubles(c);
        var stack = new RefStack(cell, "rnn.", vocab, hidden, layers);
        var expected = new double[steps * batch * vocab];
        var expectedH = new double[layers * batch * hidden];
        var expectedC = new double[layers * batch * hidden];
        var valid = new List<int>();
        for (int b = 0; b < batch; b++)
        {
            var run = stack.Forward(p, seqs[b]);
            for (int t = 0; t < seqs[b].Length; t++)
            {
                Linear(p, "decoder.", run.TopOutput(t), vocab, hidden).CopyTo(expected, (t * batch + b) * vocab);
                valid.AddRange(Enumerable.Range((t * batch + b) * vocab, vocab));
            }
            States(run, layers, b, batch, hidden, expectedH, expectedC);
        }
        CompareLogits($"{cell} lines L={layers} H={hidden} V={vocab}", onnx[OnnxExport.Logits], engine, expected, valid);
        CompareStates(onnx, expectedH, expectedC, cell);
    }

    /// <summary>
    /// Streaming: two windows with h_n (and c_n) fed back as h0 (c0) equal one run over both, and the second window's
    /// logits equal the engine's with its state carried from the first (stream mode, B = 3, 2 layers).
    /// </summary>
    [TestCase(CellKind.Elman)]
    [TestCase(CellKind.Gru)]
    [TestCase(CellKind.Lstm)]
    public void StateCarriedAcrossWindowsEqualsOneRun(CellKind cell)
    {
        const int layers = 2, hidden = 4, vocab = 11, batch = 3, half = 4;
        var config = new ModelConfig(vocab, hidden, layers, Cell: cell);
        var c = Save(config, DataMode.Stream, seed: 8);
        int[][] seqs = Sequences([2 * half, 2 * half, 2 * half], vocab, seed: 9);
        int[][] first = seqs.Select(s => s[..half]).ToArray(), second = seqs.Select(s => s[half..]).ToArray();
        bool lstm = cell == CellKind.Lstm;

        using var session = Session(c);
        Dictionary<string, float[]> Window(int[][] part, float[]? h0, float[]? c0)
        {
            var inputs = new Dictionary<string, OrtValue>
            {
                [OnnxExport.InputIds] = Ids(part, part[0].Length),
                [OnnxExport.Lengths] = Lengths(part),
                [OnnxExport.InitialH] = h0 is null ? Zeros(layers, batch, hidden) : OrtValue.CreateTensorValueFromMemory(h0, [layers, batch, hidden]),
            };
            if (lstm)
                inputs[OnnxExport.InitialC] = c0 is null ? Zeros(layers, batch, hidden) : OrtValue.CreateTensorValueFromMemory(c0, [layers, batch, hidden]);
            return Run(session, inputs);
        }
        var a = Window(first, null, null);
        var b = Window(second, a[OnnxExport.FinalH], lstm ? a[OnnxExport.FinalC] : null);
        var whole = Window(seqs, null, null);

        using var model = c.CreateModel(Device);
        using var predictor = new Predictor(model);
        predictor.Logits(EngineWindow(first, half, padded: false));
        var secondWindow = EngineWindow(second, half, padded: false);
        secondWindow.ResetState = false; // the engine carries its state from the first window
        var engine = predictor.Logits(secondWindow);

        var p = Doubles(c);
        var stack = new RefStack(cell, "rnn.", vocab, hidden, layers);
        var expected = new double[half * batch * vocab];
        var expectedH = new double[layers * batch * hidden];
        var expectedC = new double[layers * batch * hidden];
        for (int s = 0; s < batch; s++)
        {
            var run = stack.Forward(p, seqs[s]);
            for (int t = 0; t < half; t++)
                Linear(p, "decoder.", run.TopOutput(half + t), vocab, hidden).CopyTo(expected, (t * batch + s) * vocab);
            States(run, layers, s, batch, hidden, expectedH, expectedC);
        }
        var all = Enumerable.Range(0, expected.Length).ToList();
        CompareLogits($"{cell} stream, second window with carried state", b[OnnxExport.Logits], engine, expected, all);
        CompareStates(b, expectedH, expectedC, cell);
        // The carried run and the one run agree as closely as each agrees with the reference.
        var wholeSecond = whole[OnnxExport.Logits][(half * batch * vocab)..];
        AssertClose(b[OnnxExport.Logits], wholeSecond.Select(v => (double)v).ToArray(), Tolerance(expected, 0), "two windows vs one run: logits");
        AssertClose(b[OnnxExport.FinalH], whole[OnnxExport.FinalH].Select(v => (double)v).ToArray(), Tolerance(expectedH, 0), "two windows vs one run: h_n");
    }

    /// <summary>
    /// Classifier on a padded batch of very different lengths (8, 1, 3, 5): logits and softmax probabilities from each
    /// sequence's last true state. Bidirectional: the head reads [forward after the last token; reverse after the first],
    /// so ONNX Runtime's reverse direction must read each sequence from its own last true token (length 1 beside 8 shows
    /// it); V > D·G exports the one-hot input as the directions' W_ihᵀ side by side, V ≤ D·G as an identity: both are covered.
    /// </summary>
    [TestCase(CellKind.Elman, 2, 5, 9, false)]
    [TestCase(CellKind.Gru, 1, 4, 11, false)]
    [TestCase(CellKind.Gru, 2, 3, 17, false)]
    [TestCase(CellKind.Lstm, 2, 3, 9, false)]
    [TestCase(CellKind.Elman, 2, 3, 9, true)]
    [TestCase(CellKind.Elman, 1, 5, 7, true)]
    [TestCase(CellKind.Gru, 1, 2, 17, true)]
    [TestCase(CellKind.Gru, 2, 4, 11, true)]
    [TestCase(CellKind.Lstm, 2, 3, 9, true)]
    [TestCase(CellKind.Lstm, 1, 2, 19, true)]
    public void ClassifierMatchesTheEngine(CellKind cell, int layers, int hidden, int vocab, bool bidirectional)
    {
        const int classes = 3;
        var config = new ModelConfig(vocab, hidden, layers, classes, Cell: cell, Bidirectional: bidirectional);
        var c = Save(config, DataMode.Labeled, seed: 4);
        int[][] seqs = Sequences([8, 1, 3, 5], vocab, seed: 6);
        int steps = 8, batch = seqs.Length;

        using var model = c.CreateModel(Device);
        using var predictor = new Predictor(model);
        var engine = predictor.ClassLogits(EngineWindow(seqs, steps)); // [B, C]

        using var session = Session(c);
        var onnx = Run(session, new Dictionary<string, OrtValue> { [OnnxExport.InputIds] = Ids(seqs, steps), [OnnxExport.Lengths] = Lengths(seqs) });

        var p = Doubles(c);
        var expected = seqs.SelectMany(s => RefClassifier.ForwardBackward(p, vocab, hidden, layers, classes, s, label: 0, cell, bidirectional).Logits).ToArray();
        CompareLogits($"{cell} labeled{(bidirectional ? " bidirectional" : "")} L={layers} H={hidden} V={vocab}", onnx[OnnxExport.Logits], engine, expected,
            Enumerable.Range(0, expected.Length).ToList());
        var probabilities = new double[expected.Length];
        for (int b = 0; b < batch; b++)
        {
            var row = expected.AsSpan(b * classes, classes);
            double max = row.ToArray().Max(), sum = row.ToArray().Sum(l => Math.Exp(l - max));
            for (int k = 0; k < classes; k++)
                probabilities[b * classes + k] = Math.Exp(row[k] - max) / sum;
        }
        // |Δp_k| ≤ p_k·(|Δl_k| + Σ_j p_j·|Δl_j|) ≤ 2·max|Δl| for logit errors Δl within the bound above.
        double logitBound = (Atol + Rtol) * expected.Max(Math.Abs);
        AssertClose(onnx[OnnxExport.Probabilities], probabilities, _ => 2 * logitBound, "probabilities");
    }

    /// <summary>
    /// Encoder–decoder on padded sources of very different lengths (7, 1, 4, 2) and teacher-forced decoder inputs (lengths
    /// 3, 1, 2, 3): the decoder's logits at every true position and its h_n (c_n). A bidirectional encoder starts each
    /// decoder layer from the sum of its two final states (h and c); with Luong attention the output layer reads
    /// h̃ = tanh(W_c [c; h]) over the encoder's top outputs (a bidirectional encoder's summed over the directions), with
    /// Bahdanau's the first decoder layer reads each step's context (a Scan; its state held past each target's length), and the
    /// <c>attention</c> output holds the weights: the reference's on true source positions, exactly 0 past each source's length.
    /// </summary>
    [TestCase(CellKind.Elman, 1, 5, 9, false, AttentionKind.None)]
    [TestCase(CellKind.Gru, 2, 4, 9, false, AttentionKind.None)]
    [TestCase(CellKind.Lstm, 2, 3, 11, false, AttentionKind.None)]
    [TestCase(CellKind.Lstm, 1, 5, 7, false, AttentionKind.None)]
    [TestCase(CellKind.Elman, 2, 3, 9, true, AttentionKind.None)]
    [TestCase(CellKind.Gru, 1, 4, 11, true, AttentionKind.None)]
    [TestCase(CellKind.Lstm, 2, 3, 9, true, AttentionKind.None)]
    [TestCase(CellKind.Elman, 2, 5, 7, false, AttentionKind.Dot)]
    [TestCase(CellKind.Gru, 1, 4, 9, false, AttentionKind.Dot)]
    [TestCase(CellKind.Lstm, 2, 3, 11, false, AttentionKind.Dot)]
    [TestCase(CellKind.Elman, 1, 3, 9, false, AttentionKind.General)]
    [TestCase(CellKind.Gru, 2, 3, 7, false, AttentionKind.General)]
    [TestCase(CellKind.Lstm, 1, 4, 9, false, AttentionKind.General)]
    [TestCase(CellKind.Elman, 1, 3, 9, true, AttentionKind.Dot)]
    [TestCase(CellKind.Gru, 2, 4, 7, true, AttentionKind.Dot)]
    [TestCase(CellKind.Lstm, 2, 3, 11, true, AttentionKind.Dot)]
    [TestCase(CellKind.Elman, 2, 3, 11, true, AttentionKind.General)]
    [TestCase(CellKind.Gru, 1, 3, 9, true, AttentionKind.General)]
    [TestCase(CellKind.Lstm, 2, 4, 7, true, AttentionKind.General)]
    [TestCase(CellKind.Elman, 1, 3, 9, false, AttentionKind.Additive)]
    [TestCase(CellKind.Gru, 2, 4, 7, false, AttentionKind.Additive)]
    [TestCase(CellKind.Lstm, 2, 3, 11, false, AttentionKind.Additive)]
    [TestCase(CellKind.Elman, 2, 3, 11, true, AttentionKind.Additive)]
    [TestCase(CellKind.Gru, 1, 3, 9, true, AttentionKind.Additive)]
    [TestCase(CellKind.Lstm, 1, 4, 7, true, AttentionKind.Additive)]
    public void EncoderDecoderMatchesTheEngine(CellKind cell, int layers, int hidden, int vocab, bool bidirectional, AttentionKind attention)
    {
        var config = new ModelConfig(vocab, hidden, layers, EncoderDecoder: true, Cell: cell, Bidirectional: bidirectional, Attention: attention);
        var c = Save(config, DataMode.Pairs, seed: 5);
        int[][] sources = Sequences([7, 1, 4, 2], vocab, seed: 10);
        int[][] targets = Sequences([3, 1, 2, 3], vocab, seed: 11);
        int batch = sources.Length, sourceSteps = 7, steps = 3;

        using var model = c.CreateModel(Device);
        using var predictor = new Predictor(model);
        var window = EngineWindow(targets, steps);
        window.Source = EngineWindow(sources, sourceSteps);
        var engine = predictor.Logits(window); // [T·B, V]

        using var session = Session(c);
        var onnx = Run(session, new Dictionary<string, OrtValue>
        {
            [OnnxExport.SourceIds] = Ids(sources, sourceSteps),
            [OnnxExport.SourceLengths] = Lengths(sources),
            [OnnxExport.DecoderInputIds] = Ids(targets, steps),
            [OnnxExport.DecoderLengths] = Lengths(targets),
        });

        var p = Doubles(c);
        var expected = new double[steps * batch * vocab];
        var expectedH = new double[layers * batch * hidden];
        var expectedC = new double[layers * batch * hidden];
        var expectedWeights = new double[batch * steps * sourceSteps]; // [B, T, S], 0 past each source's length
        var valid = new List<int>();
        var validWeights = new List<int>();
        for (int b = 0; b < batch; b++)
        {
            // The reference decodes [bos, target…]: the decoder's inputs are that with bos = their first token.
            var (logits, weights, run) = RefSeq2Seq.Forward(p, vocab, hidden, layers, sources[b], targets[b][1..], bos: targets[b][0], eos: 0, cell, attention, bidirectional);
            for (int t = 0; t < targets[b].Length; t++)
            {
                logits[t].CopyTo(expected, (t * batch + b) * vocab);
                valid.AddRange(Enumerable.Range((t * batch + b) * vocab, vocab));
                weights[t].CopyTo(expectedWeights, (b * steps + t) * sourceSteps);
                validWeights.AddRange(Enumerable.Range((b * steps + t) * sourceSteps, sourceSteps));
            }
            States(run, layers, b, batch, hidden, expectedH, expectedC);
        }
        string what = $"{cell} pairs{(bidirectional ? " bidirectional" : "")}{(attention == AttentionKind.None ? "" : " " + AttentionNames.Name(attention))} L={layers} H={hidden} V={vocab}";
        CompareLogits(what, onnx[OnnxExport.Logits], engine, expected, valid);
        CompareStates(onnx, expectedH, expectedC, cell);
        if (attention == AttentionKind.None)
        {
            Assert.That(onnx.ContainsKey(OnnxExport.AttentionWeights), Is.False, "only a model with attention has attention weights");
            return;
        }
        var a = onnx[OnnxExport.AttentionWeights];
        Assert.That(a, Has.Length.EqualTo(expectedWeights.Length), "attention [B, T, S]");
        foreach (int i in validWeights.Where(i => i % sourceSteps >= sources[i / (steps * sourceSteps)].Length))
            Assert.That(a[i], Is.EqualTo(0f), $"attention weight {i} on a padded source position");
        double worst = validWeights.Max(i => Math.Abs(a[i] - expectedWeights[i]));
        TestContext.Out.WriteLine($"ONNX {what} on {Spec}: attention weights vs double reference {worst:E2}");
        AssertClose([.. validWeights.Select(i => a[i])], [.. validWeights.Select(i => expectedWeights[i])], _ => WeightTolerance(hidden), what + ": attention weights");
    }

    /// <summary>
    /// Greedy decoding as the README says (run the teacher-forced model again with the arg-max of the last step appended,
    /// until <c>&lt;eos&gt;</c>) gives the engine's tokens (<see cref="Predictor.Decode"/>), and with attention the first
    /// sequence's <c>attention</c> rows are the engine's weights of each decoded step, within the bound of
    /// <see cref="WeightTolerance"/>. Random models repeat one token; scaled weights and these seeds (picked from a few
    /// tried) give varied tokens and some early ends (the decoded tokens are printed).
    /// </summary>
    [TestCase(CellKind.Gru, false, AttentionKind.None, 8, 12, 5f)]
    [TestCase(CellKind.Lstm, true, AttentionKind.General, 4, 14, 5f)]
    [TestCase(CellKind.Elman, false, AttentionKind.Dot, 8, 21, 3f)]
    [TestCase(CellKind.Gru, true, AttentionKind.Additive, 8, 30, 5f)]
    [TestCase(CellKind.Lstm, false, AttentionKind.Additive, 8, 30, 5f)]
    public void GreedyDecodingGivesTheEngineTokens(CellKind cell, bool bidirectional, AttentionKind attention, int hidden, int seed, float scale)
    {
        const int layers = 2, vocab = 12, bos = 2, eos = 3, maxLength = 6;
        var config = new ModelConfig(vocab, hidden, layers, EncoderDecoder: true, Cell: cell, Bidirectional: bidirectional, Attention: attention);
        var c = Save(config, DataMode.Pairs, seed, scale);
        int[][] sources = Sequences([5, 1, 3], vocab, seed: 13);
        int batch = sources.Length, sourceSteps = 5;
        int[] excluded = [0, 1, bos];

        using var model = c.CreateModel(Device);
        using var predictor = new Predictor(model);
        var engineAttention = new List<float[]>();
        var engine = predictor.Decode(EngineWindow(sources, sourceSteps), batch, bos, eos, maxLength, excluded, engineAttention);

        using var session = Session(c);
        var inputs = Enumerable.Range(0, batch).Select(_ => new List<int> { bos }).ToArray();
        var done = new bool[batch];
        var onnxAttention = new List<float[]>();
        for (int t = 0; t < maxLength && done.Contains(false); t++)
        {
            var outputs = Run(session, new Dictionary<string, OrtValue>
            {
                [OnnxExport.SourceIds] = Ids(sources, sourceSteps),
                [OnnxExport.SourceLengths] = Lengths(sources),
                [OnnxExport.DecoderInputIds] = Ids([.. inputs.Select(i => i.ToArray())], t + 1),
                [OnnxExport.DecoderLengths] = Lengths([.. inputs.Select(i => i.ToArray())]),
            });
            if (attention != AttentionKind.None && !done[0])
                onnxAttention.Add(outputs[OnnxExport.AttentionWeights][(t * sourceSteps)..((t + 1) * sourceSteps)]); // [b = 0, t, :]
            for (int b = 0; b < batch; b++)
            {
                if (done[b])
                    continue;
                var row = outputs[OnnxExport.Logits][((t * batch + b) * vocab)..((t * batch + b + 1) * vocab)];
                int best = Enumerable.Range(0, vocab).Where(v => !excluded.Contains(v)).MaxBy(v => row[v]);
                done[b] = best == eos;
                if (!done[b])
                    inputs[b].Add(best);
            }
        }
        var onnx = inputs.Select(i => i.Skip(1).ToList()).ToArray();
        TestContext.Out.WriteLine($"greedy {cell}{(bidirectional ? " bidirectional" : "")} {AttentionNames.Name(attention)}: {string.Join(" | ", onnx.Select(o => string.Join(" ", o)))}");
        Assert.That(onnx, Is.EqualTo(engine), "the decoded tokens");
        Assert.That(onnxAttention, Has.Count.EqualTo(engineAttention.Count), "one attention row per decoded step of the first sequence");
        for (int t = 0; t < onnxAttention.Count; t++)
            AssertClose(onnxAttention[t], [.. engineAttention[t].Select(v => (double)v)], _ => WeightTolerance(hidden), $"attention row {t}");
    }

    /// <summary>The metadata a server needs: vocabulary, tokenizer, mode, config and the labels.</summary>
    [Test]
    public void MetadataHoldsVocabularyAndLabels()
    {
        var c = Save(new ModelConfig(9, 3, 1, 2, Cell: CellKind.Gru), DataMode.Labeled, seed: 1);
        using var session = Session(c);
        var meta = session.ModelMetadata.CustomMetadataMap;
        Assert.That(meta[Checkpoint.VocabKey], Is.EqualTo(c.Metadata[Checkpoint.VocabKey]));
        Assert.That(meta[Checkpoint.TokenizerKey], Is.EqualTo("char"));
        Assert.That(meta[Checkpoint.ConfigKey], Is.EqualTo(c.Metadata[Checkpoint.ConfigKey]));
        Assert.That(meta[OnnxExport.ModeKey], Is.EqualTo("labeled"));
        Assert.That(meta[OnnxExport.LabelsKey], Is.EqualTo("[\"c0\",\"c1\"]"));
        Assert.That(session.ModelMetadata.ProducerName, Is.EqualTo(OnnxExport.Producer));
        Assert.That(session.InputNames, Is.EqualTo(new[] { OnnxExport.InputIds, OnnxExport.Lengths }));
        Assert.That(session.OutputNames, Is.EqualTo(new[] { OnnxExport.Logits, OnnxExport.Probabilities }));
    }

    /// <summary>
    /// The README's serving example, line for line (a word-tokenized classifier read from an .onnx file, its vocabulary,
    /// tokenizer and labels from the metadata): it gives the label and probability the engine gives.
    /// </summary>
    [Test]
    public void ServesAClassifierAsTheReadmeShows()
    {
        var vocab = Vocabulary.FromText("winner claim your free prize now\nsee you at lunch", TokenizerKind.Word);
        string checkpoint = Path.Combine(dir, "sms.safetensors"), path = Path.Combine(dir, "sms.onnx");
        using (var trained = new RnnModel(Device, new ModelConfig(vocab.Count, 6, 1, 2, Cell: CellKind.Lstm), seed: 2))
            Checkpoint.Save(checkpoint, trained, vocab, TokenizerKind.Word, mode: DataMode.Labeled, labels: ["ham", "spam"]);
        var c = Checkpoint.Load(checkpoint);
        OnnxExport.Write(c, path);
        const string text = "WINNER! claim your free prize now";

        // README, "Export to ONNX" (only the session's construction differs: a missing ONNX Runtime skips the test)
        using var session = Session(() => new InferenceSession(path));
        var meta = session.ModelMetadata.CustomMetadataMap;
        var tokens = new Vocabulary(JsonSerializer.Deserialize<string[]>(meta["gpurnn.vocab"])!);
        var labels = JsonSerializer.Deserialize<string[]>(meta["gpurnn.labels"])!;
        long[] ids = [.. SequenceData.EncodeLine(tokens, text, Tokenizer.Parse(meta["gpurnn.tokenizer"]))];
        using var input = OrtValue.CreateTensorValueFromMemory(ids, [ids.Length, 1]);              // [T, B = 1]
        using var length = OrtValue.CreateTensorValueFromMemory(new long[] { ids.Length }, [1]);  // [B]
        using var options = new RunOptions();
        using var outputs = session.Run(options, ["input_ids", "lengths"], [input, length], ["probabilities"]);
        float[] p = outputs[0].GetTensorDataAsSpan<float>().ToArray();
        int best = Array.IndexOf(p, p.Max());
        string answer = $"{labels[best]}\t{p[best]:F4}";

        using var model = c.CreateModel(Device);
        using var predictor = new Predictor(model);
        int[] seq = SequenceData.EncodeLine(vocab, text, TokenizerKind.Word);
        Assert.That(seq, Does.Contain(vocab.UnknownId), "'WINNER!' is not in the vocabulary: <unk> and '!' are part of the test");
        var logits = predictor.ClassLogits(EngineWindow([seq], seq.Length));
        var (engineBest, probability, _) = ClassifierMetrics.Predict(logits);
        Assert.That(answer, Is.EqualTo($"{c.Labels[engineBest]}\t{probability:F4}"));
        Assert.That(p[best], Is.EqualTo(probability).Within(2 * (Atol + Rtol) * logits.Max(Math.Abs)), "the probability, within the bound of ClassifierMatchesTheEngine");
    }

    // ------------------------------------------------------------------------------------ helpers

    /// <summary>
    /// A checkpoint of a freshly initialised model of <paramref name="config"/>, saved and loaded back; every weight times
    /// <paramref name="scale"/> (a larger scale makes the outputs depend more on the input, as a trained model's do).
    /// </summary>
    private Checkpoint Save(ModelConfig config, DataMode mode, int seed, float scale = 1)
    {
        using var model = new RnnModel(Device, config, seed);
        if (scale != 1)
        {
            foreach (var t in model.Layout.Tensors)
                model.SetTensor(t.Name, [.. model.GetTensor(t.Name).Select(v => v * scale)]);
        }
        var vocab = new Vocabulary(Vocabulary.Specials.Concat(Enumerable.Range(0, config.Vocab - Vocabulary.Specials.Count).Select(i => ((char)('a' + i)).ToString())));
        string path = Path.Combine(dir, "model.safetensors");
        string[]? labels = config.IsClassifier ? Enumerable.Range(0, config.Classes).Select(i => $"c{i}").ToArray() : null;
        Checkpoint.Save(path, model, vocab, TokenizerKind.Char, mode: mode, labels: labels);
        return Checkpoint.Load(path);
    }

    /// <summary>Sequences of the given lengths of ordinary tokens (ids 4 … V − 1).</summary>
    private static int[][] Sequences(int[] lengths, int vocab, int seed)
    {
        var rng = new Random(seed);
        return lengths.Select(n => Enumerable.Range(0, n).Select(_ => 4 + rng.Next(vocab - 4)).ToArray()).ToArray();
    }

    /// <summary>The engine's window: ids [T, B] time-major, −1 past each sequence's end, held state, from zero.</summary>
    private static TokenWindow EngineWindow(int[][] seqs, int steps, bool padded = true)
    {
        var w = new TokenWindow(seqs.Length, steps) { Steps = steps, Padded = padded, ResetState = true };
        Array.Fill(w.Inputs, -1);
        Array.Fill(w.Targets, -1);
        for (int b = 0; b < seqs.Length; b++)
        {
            w.Lengths[b] = seqs[b].Length;
            for (int t = 0; t < seqs[b].Length; t++)
                w.Inputs[t * seqs.Length + b] = seqs[b][t];
        }
        return w;
    }

    /// <summary>ONNX ids [T, B] (int64), <see cref="Pad"/> past each sequence's end.</summary>
    private static OrtValue Ids(int[][] seqs, int steps)
    {
        var ids = new long[steps * seqs.Length];
        Array.Fill(ids, Pad);
        for (int b = 0; b < seqs.Length; b++)
            for (int t = 0; t < seqs[b].Length; t++)
                ids[t * seqs.Length + b] = seqs[b][t];
        return OrtValue.CreateTensorValueFromMemory(ids, [steps, seqs.Length]);
    }

    private static OrtValue Lengths(int[][] seqs) => OrtValue.CreateTensorValueFromMemory(seqs.Select(s => (long)s.Length).ToArray(), [seqs.Length]);

    private static OrtValue Zeros(int layers, int batch, int hidden) => OrtValue.CreateTensorValueFromMemory(new float[layers * batch * hidden], [layers, batch, hidden]);

    /// <summary>
    /// An ONNX Runtime session of the exported checkpoint; the test is skipped (not passed) when ONNX Runtime's native
    /// library cannot be loaded on this machine.
    /// </summary>
    private static InferenceSession Session(Checkpoint c)
    {
        byte[] model = OnnxExport.Serialize(c);
        return Session(() => new InferenceSession(model));
    }

    /// <summary>A session from <paramref name="open"/>; skipped (not passed) when ONNX Runtime's native library cannot be loaded.</summary>
    private static InferenceSession Session(Func<InferenceSession> open)
    {
        try
        {
            return open();
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or BadImageFormatException or TypeInitializationException)
        {
            Assert.Ignore($"ONNX Runtime is not available here: {e.GetType().Name}: {e.Message.ReplaceLineEndings(" ")}");
            throw;
        }
    }

    /// <summary>Runs the session; every output as a flat float array by name. Disposes the inputs.</summary>
    private static Dictionary<string, float[]> Run(InferenceSession session, Dictionary<string, OrtValue> inputs)
    {
        try
        {
            using var options = new RunOptions();
            using var outputs = session.Run(options, inputs.Keys.ToArray(), inputs.Values.ToArray(), session.OutputNames);
            return session.OutputNames.Zip(outputs).ToDictionary(o => o.First, o => o.Second.GetTensorDataAsSpan<float>().ToArray());
        }
        finally
        {
            foreach (var v in inputs.Values)
                v.Dispose();
        }
    }

    private static Dictionary<string, double[]> Doubles(Checkpoint c) => c.Weights.ToDictionary(kv => kv.Key, kv => kv.Value.Select(v => (double)v).ToArray());

    /// <summary>W·h + b for the head <paramref name="head"/> (<c>decoder.</c> or <c>decoder.out.</c>): W [rows, H].</summary>
    private static double[] Linear(Dictionary<string, double[]> p, string head, double[] h, int rows, int hidden)
    {
        var w = p[head + "weight"];
        var y = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            y[r] = p[head + "bias"][r];
            for (int j = 0; j < hidden; j++)
                y[r] += w[r * hidden + j] * h[j];
        }
        return y;
    }

    /// <summary>Puts sequence <paramref name="b"/>'s final h and c of every layer into [L, B, H] arrays.</summary>
    private static void States(RefStackRun run, int layers, int b, int batch, int hidden, double[] h, double[] c)
    {
        for (int k = 0; k < layers; k++)
        {
            run.FinalH(k).CopyTo(h, (k * batch + b) * hidden);
            run.FinalC(k).CopyTo(c, (k * batch + b) * hidden);
        }
    }

    /// <summary>Per element: <see cref="Atol"/>·(max|ref| + <paramref name="extra"/>) + <see cref="Rtol"/>·|ref|.</summary>
    private static Func<int, double> Tolerance(double[] expected, double extra)
    {
        double scale = expected.Max(Math.Abs);
        return i => (Atol + extra) * scale + Rtol * Math.Abs(expected[i]);
    }

    /// <summary>
    /// ONNX Runtime and the engine each within the float32 bound of the reference at <paramref name="valid"/> positions,
    /// and within the sum of both bounds of each other; prints the largest differences.
    /// </summary>
    private void CompareLogits(string what, float[] onnx, float[] engine, double[] expected, List<int> valid)
    {
        Assert.That(onnx, Has.Length.EqualTo(expected.Length), what + ": ONNX logits length");
        Assert.That(engine, Has.Length.EqualTo(expected.Length), what + ": engine logits length");
        var onnxTol = Tolerance(expected, 0);
        var engineTol = Tolerance(expected, TestDevices.TanhTolerance(Device));
        double worstOnnx = 0, worstEngine = 0, worstBetween = 0;
        foreach (int i in valid)
        {
            worstOnnx = Math.Max(worstOnnx, Math.Abs(onnx[i] - expected[i]));
            worstEngine = Math.Max(worstEngine, Math.Abs(engine[i] - expected[i]));
            worstBetween = Math.Max(worstBetween, Math.Abs(onnx[i] - engine[i]));
            Assert.That(Math.Abs(onnx[i] - expected[i]), Is.LessThanOrEqualTo(onnxTol(i)), $"{what}: ONNX Runtime logit {i} vs reference");
            Assert.That(Math.Abs(engine[i] - expected[i]), Is.LessThanOrEqualTo(engineTol(i)), $"{what}: engine logit {i} vs reference");
            Assert.That(Math.Abs(onnx[i] - engine[i]), Is.LessThanOrEqualTo(onnxTol(i) + engineTol(i)), $"{what}: ONNX Runtime vs engine logit {i}");
        }
        TestContext.Out.WriteLine($"ONNX {what} on {Spec}: max |engine − ONNX Runtime| logit {worstBetween:E2}; vs double reference: ONNX Runtime {worstOnnx:E2}, engine {worstEngine:E2} (max |logit| {expected.Max(Math.Abs):F3}, {valid.Count} values)");
    }

    /// <summary>h_n (and an LSTM's c_n) against the reference's final states.</summary>
    private static void CompareStates(Dictionary<string, float[]> onnx, double[] h, double[] c, CellKind cell)
    {
        AssertClose(onnx[OnnxExport.FinalH], h, Tolerance(h, 0), "h_n");
        if (cell == CellKind.Lstm)
            AssertClose(onnx[OnnxExport.FinalC], c, Tolerance(c, 0), "c_n");
        else
            Assert.That(onnx.ContainsKey(OnnxExport.FinalC), Is.False, "only an LSTM has c_n");
    }
}

/// <summary><c>gpurnn export</c>: what it writes and says, and one-line errors for bad input that leave no file behind.</summary>
public sealed class OnnxExportCliTests : CliHarness
{
    /// <summary>A small GRU language model's checkpoint in the test folder, made through the library (no training needed).</summary>
    private string Checkpoint()
    {
        string path = P("model.safetensors");
        using (var model = new RnnModel(TestDevices.Get("cpu"), new ModelConfig(9, 4, 2, Cell: CellKind.Gru), seed: 1))
            GpuRnn.Checkpoints.Checkpoint.Save(path, model, Vocabulary.FromText("abcde"), TokenizerKind.Char);
        return path;
    }

    private void AssertNoTemporaryFiles() => Assert.That(Directory.GetFiles(Dir, "*.tmp"), Is.Empty, "no temporary file is left behind");

    [Test]
    public void ExportWritesAModelThatSaysItsInputsAndCanBeReplaced()
    {
        string model = Checkpoint(), onnx = P("out/model.onnx");
        var (code, output, error) = Run("export", "--checkpoint", model, "--onnx", onnx);
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), error);
        Assert.That(output.Trim(), Does.StartWith($"wrote {onnx}: GRU stream model, L=2 H=4 V=9, ONNX opset 17; input_ids lengths h0 → logits h_n"));
        Assert.That(OnnxExport.IsExportedModel(onnx), Is.True);
        Assert.That(Run("export", model, "--onnx", onnx).Code, Is.EqualTo(ExitCodes.Ok), "an exported model may be replaced");
        AssertNoTemporaryFiles();
    }

    [Test]
    public void AMissingCheckpointIsOneLineAndWritesNothing()
    {
        var (code, _, error) = Run("export", "--checkpoint", P("nope.safetensors"), "--onnx", P("m.onnx"));
        Assert.That(code, Is.EqualTo(ExitCodes.Error));
        Assert.That(error.Trim(), Is.EqualTo($"gpurnn: {P("nope.safetensors")}: no such file"));
        Assert.That(File.Exists(P("m.onnx")), Is.False);
    }

    [Test]
    public void AFolderAsTheTargetIsRefused()
    {
        var (code, _, error) = Run("export", "--checkpoint", Checkpoint(), "--onnx", Dir);
        Assert.That(code, Is.EqualTo(ExitCodes.Error));
        Assert.That(error.Trim(), Is.EqualTo($"gpurnn: {Dir}: is a folder; name the .onnx file to write"));
        AssertNoTemporaryFiles();
    }

    [Test]
    public void AnotherFileIsNeverOverwritten()
    {
        string model = Checkpoint();
        byte[] data = File.ReadAllBytes(Data), checkpoint = File.ReadAllBytes(model);
        foreach (string target in new[] { Data, model })
        {
            var (code, _, error) = Run("export", "--checkpoint", model, "--onnx", target);
            Assert.That(code, Is.EqualTo(ExitCodes.Error), target);
            Assert.That(error.Trim(), Is.EqualTo($"gpurnn: {target}: exists and is not an ONNX model written by GpuRnn; not overwriting it"));
        }
        Assert.That(File.ReadAllBytes(Data), Is.EqualTo(data));
        Assert.That(File.ReadAllBytes(model), Is.EqualTo(checkpoint));
        AssertNoTemporaryFiles();
    }

    [Test]
    public void MissingFlagsAreUsageErrors()
    {
        Assert.That(Run("export", "--checkpoint", Checkpoint()).Code, Is.EqualTo(ExitCodes.Usage));
        Assert.That(Run("export", "--onnx", P("m.onnx")).Code, Is.EqualTo(ExitCodes.Usage));
        var (code, _, error) = Run("export", "--checkpoint", Checkpoint(), "--onnx", " ");
        Assert.That(code, Is.EqualTo(ExitCodes.Error));
        Assert.That(error.Trim(), Is.EqualTo("gpurnn: --onnx: name the .onnx file to write"));
    }

    /// <summary>A real checkpoint of <paramref name="config"/> (a classifier's labels x, y, z; an encoder–decoder in pairs mode) in the test folder.</summary>
    private string Checkpoint(ModelConfig config, string name)
    {
        string model = P(name);
        using (var network = new RnnModel(TestDevices.Get("cpu"), config, seed: 1))
            GpuRnn.Checkpoints.Checkpoint.Save(model, network, Vocabulary.FromText("abcde"), TokenizerKind.Char,
                mode: config.IsClassifier ? DataMode.Labeled : DataMode.Pairs, labels: config.IsClassifier ? ["x", "y", "z"] : null);
        return model;
    }

    /// <summary>Bidirectional models and attention of each kind export, and the one line says so, with the extra <c>attention</c> output.</summary>
    [Test]
    public void BidirectionalAndAttentionModelsExportAndSaySo()
    {
        string classifier = Checkpoint(new ModelConfig(9, 4, 2, Classes: 3, Cell: CellKind.Lstm, Bidirectional: true), "bi.safetensors"), onnx = P("bi.onnx");
        var (code, output, error) = Run("export", "--checkpoint", classifier, "--onnx", onnx);
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), error);
        Assert.That(output.Trim(), Is.EqualTo($"wrote {onnx}: LSTM labeled model (bidirectional), L=2 H=4 V=9, ONNX opset 17; input_ids lengths → logits probabilities"));

        string pairs = Checkpoint(new ModelConfig(9, 4, 1, EncoderDecoder: true, Cell: CellKind.Gru, Bidirectional: true, Attention: AttentionKind.General), "att.safetensors");
        (code, output, error) = Run("export", "--checkpoint", pairs, "--onnx", onnx);
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), error);
        Assert.That(output.Trim(), Is.EqualTo($"wrote {onnx}: GRU pairs model (bidirectional encoder) with Luong general attention, L=1 H=4 V=9, ONNX opset 17; "
            + "source_ids source_lengths decoder_input_ids decoder_lengths → logits h_n attention"));

        string additive = Checkpoint(new ModelConfig(9, 4, 2, EncoderDecoder: true, Cell: CellKind.Lstm, Attention: AttentionKind.Additive), "add.safetensors");
        (code, output, error) = Run("export", "--checkpoint", additive, "--onnx", onnx);
        Assert.That(code, Is.EqualTo(ExitCodes.Ok), error);
        Assert.That(output.Trim(), Is.EqualTo($"wrote {onnx}: LSTM pairs model with Bahdanau additive attention, L=2 H=4 V=9, ONNX opset 17; "
            + "source_ids source_lengths decoder_input_ids decoder_lengths → logits h_n c_n attention"));
        AssertNoTemporaryFiles();
    }
}
