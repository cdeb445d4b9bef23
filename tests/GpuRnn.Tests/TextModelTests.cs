using GpuRnn.Kernels;
using NUnit.Framework;

namespace GpuRnn.Tests;

/// <summary>The library facade (<see cref="TextModel"/>): what a script does with a model, on tiny models on the CPU accelerator.</summary>
public sealed class TextModelTests
{
    private string dir = null!;

    [SetUp]
    public void MakeFolder()
    {
        dir = Path.Combine(Path.GetTempPath(), "gpurnn-facade-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
    }

    [TearDown]
    public void RemoveFolder() => Directory.Delete(dir, recursive: true);

    /// <summary>The label is the last character's class: x/y/z texts ending in 'a' are "A", in 'b' "B".</summary>
    private static TextData LastLetter()
    {
        var rows = new List<(string, string)>();
        foreach (string head in new[] { "", "x", "y", "z", "xy", "zz", "yx" })
        {
            rows.Add((head + "a", "A"));
            rows.Add((head + "b", "B"));
        }
        return TextData.Labeled(rows);
    }

    [Test]
    public void ClassifierLearnsPredictsAsThePredictorAndSurvivesSaveAndLoad()
    {
        var data = LastLetter();
        using var model = TextModel.Create(data, new ModelSettings { Hidden = 8 }, "cpu");
        Assert.That((model.Mode, model.Labels, model.Config.Classes), Is.EqualTo((DataMode.Labeled, new[] { "A", "B" }, 2)));
        double before = model.Evaluate(data).Loss;
        var losses = model.Fit(data, new FitSettings { Steps = 60, Batch = 7, Optimizer = new OptimizerSettings(OptimizerKind.Adam, 0.05f) });
        Assert.That(losses.Select(l => l.Step), Is.EqualTo(new long[] { 10, 20, 30, 40, 50, 60 }));
        var after = model.Evaluate(data);
        Assert.That(after.Loss, Is.LessThan(before / 4), "trained");
        Assert.That(after.Classes!.Accuracy, Is.EqualTo(1.0));

        // Predict is the five calls it replaces: encode, batch, ClassLogits, softmax.
        var answer = model.Predict("zyxa");
        using (var predictor = new Predictor(model.Network))
        {
            var window = new SequenceBatcher([model.Vocabulary.Encode("zyxa")], [0], 1, -1, -1, 0).InOrder().Single();
            var (best, probability, _) = ClassifierMetrics.Predict(predictor.ClassLogits(window));
            Assert.That(answer, Is.EqualTo(new Prediction(model.Labels[best], probability)));
        }
        Assert.That(answer.Label, Is.EqualTo("A"));
        Assert.That(model.Predict(["xb", "ya", "b"]).Select(p => p.Label), Is.EqualTo(new[] { "B", "A", "B" }));

        string path = Path.Combine(dir, "classifier.safetensors");
        model.Save(path);
        using var loaded = TextModel.Load(path, "cpu");
        Assert.That(loaded.Labels, Is.EqualTo(model.Labels));
        Assert.That(loaded.Predict("zyxa"), Is.EqualTo(answer), "the same weights give the same probability, bit for bit");
    }

    [Test, Category("Learning")]
    public void EncoderDecoderLearnsToReverseAndTranslatesAsTheDecoder()
    {
        string[] letters = ["a", "b", "c"];
        var pairs = (from x in letters from y in letters from z in letters select (x + y + z, z + y + x)).ToList();
        var data = TextData.Pairs(pairs);
        using var model = TextModel.Create(data, new ModelSettings { Hidden = 24, Cell = CellKind.Gru }, "cpu");
        model.Fit(data, new FitSettings { Steps = 300, Batch = 9, Optimizer = new OptimizerSettings(OptimizerKind.Adam, 0.02f, ClipNorm: 5f) });
        var score = model.Evaluate(data);
        Assert.That(score.Pairs!.ExactMatch, Is.EqualTo(1.0), $"token accuracy {score.Pairs.TokenAccuracy}");
        var sources = pairs.Select(p => p.Item1).ToList();
        Assert.That(model.Translate(sources), Is.EqualTo(pairs.Select(p => p.Item2).ToList()));
        Assert.That(model.Translate("abc", maxLength: 2), Is.EqualTo("cb"), "stops at maxLength");
    }

    [Test]
    public void LanguageModelSamplesAsTheGeneratorDoes()
    {
        var data = TextData.Stream(DefaultCorpus.Text[..2000]);
        using var model = TextModel.Create(data, new ModelSettings { Hidden = 16 }, "cpu");
        var losses = model.Fit(data, new FitSettings { Steps = 5, Batch = 4, SeqLen = 16, ReportEvery = 1 });
        Assert.That(losses, Has.Count.EqualTo(5));
        Assert.That(model.Steps, Is.EqualTo(5));
        string text = model.Sample("ROMEO:", 40, temperature: 0.8f, seed: 3);
        using var generator = new Generator(model.Network);
        Assert.That(text, Is.EqualTo(generator.Sample(model.Vocabulary, "ROMEO:", 40, new SamplingOptions(0.8f, Seed: 3))));
        Assert.That(model.Evaluate(data, batch: 4, seqLen: 16).Count, Is.GreaterThan(1900));
    }

    [Test]
    public void LineModelFromAFileWritesOneLine()
    {
        string path = Path.Combine(dir, "names.txt");
        File.WriteAllText(path, "anna\nbob\n\ncarla\n");
        var data = TextData.FromFile(path, DataMode.Lines);
        Assert.That(data.Sequences, Is.EqualTo(new[] { "anna", "bob", "carla" }));
        using var model = TextModel.Create(data, new ModelSettings { Hidden = 8 }, "cpu");
        model.Fit(data, new FitSettings { Steps = 3, Batch = 2 });
        Assert.That(model.Sample(length: 30, seed: 1), Does.Not.Contain("\n"));
    }

    [Test]
    public void SplitHoldsOutTheTailAsTrainDoes()
    {
        var (train, held) = TextData.Stream("abcdefghij").Split(0.3);
        Assert.That((train.Text, held.Text), Is.EqualTo(("abcdefg", "hij")));
        var (first, last) = TextData.Pairs([("a", "A"), ("b", "B"), ("c", "C"), ("d", "D")]).Split(0.25);
        Assert.That((first.Sequences, first.Targets, last.Sequences, last.Targets),
            Is.EqualTo((new[] { "a", "b", "c" }, new[] { "A", "B", "C" }, new[] { "d" }, new[] { "D" })));
        Assert.That(TextData.Lines(["x", "y"]).Split(0.99).Train.Sequences, Is.EqualTo(new[] { "x" }), "one sequence always trains");
        Assert.That(Assert.Throws<GpuRnnException>(() => TextData.Lines(["x"]).Split(1))!.Parameter, Is.EqualTo("heldOut"));
    }

    [Test]
    public void MisuseIsAOneLineErrorInTheLibrarysWords()
    {
        var stream = TextData.Stream("abcabcabcabcabcabc");
        using var model = TextModel.Create(stream, new ModelSettings { Hidden = 4 }, "cpu");
        Assert.That(Assert.Throws<GpuRnnException>(() => model.Predict("abc"))!.Message, Does.Contain("Predict needs a classifier"));
        Assert.That(Assert.Throws<GpuRnnException>(() => model.Translate("abc"))!.Message, Does.Contain("Translate needs an encoder–decoder"));
        Assert.That(Assert.Throws<GpuRnnException>(() => model.Fit(LastLetter()))!.Message, Does.Contain("labeled data, but this model reads stream data"));
        var steps = Assert.Throws<GpuRnnException>(() => model.Fit(stream, new FitSettings { Steps = 0 }))!;
        Assert.That((steps.Parameter, steps.Message), Is.EqualTo(("FitSettings.Steps", "FitSettings.Steps must be a positive integer (got 0)")));
        var lr = Assert.Throws<GpuRnnException>(() => model.Fit(stream, new FitSettings { Batch = 2, SeqLen = 4, Optimizer = new OptimizerSettings(OptimizerKind.Sgd, 0f) }))!;
        Assert.That(lr.Message, Does.StartWith("LearningRate must be a positive finite number").And.Not.Contain("--"));
        var hidden = Assert.Throws<GpuRnnException>(() => TextModel.Create(stream, new ModelSettings { Hidden = 0 }, "cpu"))!;
        Assert.That(hidden.Message, Does.StartWith("ModelSettings.Hidden must be a positive integer"));
        string missing = Path.Combine(dir, "none.safetensors");
        Assert.That(Assert.Throws<GpuRnnException>(() => TextModel.Load(missing, "cpu"))!.Message, Does.Contain(missing).And.Not.Contain("\n"));
        var unknown = TextData.Labeled([("a", "A"), ("b", "C")]);
        using var classifier = TextModel.Create(LastLetter(), new ModelSettings { Hidden = 4 }, "cpu");
        Assert.That(Assert.Throws<GpuRnnException>(() => classifier.Evaluate(unknown))!.Message, Does.Contain("label 'C' of example 2 is not one of the model's [A, B]"));
    }
}
