using GpuRnn.Tests.Reference;
using NUnit.Framework;

namespace GpuRnn.Tests;

[TestFixtureSource(typeof(TestDevices), nameof(TestDevices.Specs))]
public sealed class GeneratorTests(string spec) : DeviceFixture(spec)
{
    [TestCase(1)]
    [TestCase(2)]
    public void GreedyTokensAreTheReferenceArgmax(int layers)
    {
        const int vocab = 9, hidden = 7;
        using var model = new RnnModel(Device, new ModelConfig(vocab, hidden, layers), seed: 4);
        using var generator = new Generator(model);
        int[] prime = [3, 5, 1];
        var generated = generator.SampleIds(prime, 6, new SamplingOptions(Temperature: 0));
        Assert.That(generated, Has.Count.EqualTo(6));

        var reference = RefModel.FromFloats(vocab, hidden, layers, model.Layout.Tensors.ToDictionary(t => t.Name, t => model.GetTensor(t.Name)));
        int[] all = [.. prime, .. generated];
        var inputs = new int[1, all.Length - 1];
        for (int t = 0; t < all.Length - 1; t++)
            inputs[0, t] = all[t];
        var logits = RefRnn.ForwardBackward(reference, inputs, new int[1, all.Length - 1]).Logits; // [S, 1, V]
        for (int t = prime.Length - 1; t < all.Length - 1; t++)
        {
            var row = logits.AsSpan(t * vocab, vocab).ToArray();
            Assert.That(all[t + 1], Is.EqualTo(Array.IndexOf(row, row.Max())), $"token after step {t}");
        }
    }

    [Test]
    public void SameSeedSameTextAndEndOfSequenceStops()
    {
        var vocab = Vocabulary.FromText("abcab");
        using var model = new RnnModel(Device, new ModelConfig(vocab.Count, 8, 1), seed: 2);
        using var generator = new Generator(model);
        var o = new SamplingOptions(Temperature: 1.5f, Seed: 9);
        string first = generator.Sample(vocab, "ab", 40, o);
        Assert.That(generator.Sample(vocab, "ab", 40, o), Is.EqualTo(first));
        Assert.That(generator.Sample(vocab, "ab", 40, o with { Seed = 10 }), Is.Not.EqualTo(first));
        Assert.That(first, Does.Not.Contain(Vocabulary.Pad).And.Not.Contain(Vocabulary.Bos));

        // A decoder that always predicts one token: 'a' runs the full length, <eos> stops at once.
        model.SetTensor("decoder.weight", new float[vocab.Count * 8]);
        var bias = new float[vocab.Count];
        bias[vocab.IdOf("a")] = 50f;
        model.SetTensor("decoder.bias", bias);
        Assert.That(generator.Sample(vocab, "ab", 40, o), Is.EqualTo(new string('a', 40)), "the continuation, without the prime");
        bias[vocab.IdOf("a")] = 0f;
        bias[vocab.EndId] = 50f;
        model.SetTensor("decoder.bias", bias);
        Assert.That(generator.Sample(vocab, "ab", 40, o), Is.Empty, "sampling stops at <eos>");
    }

    [Test]
    public void PickHonoursTopKTopPAndExclusions()
    {
        float[] logits = [0f, 3f, 2.5f, 1f, 2.9f];
        var probs = new double[logits.Length];
        var rng = new Random(1);
        var seen = new HashSet<int>();
        for (int i = 0; i < 300; i++)
            seen.Add(Generator.Pick(logits, probs, new SamplingOptions(TopK: 2), null, rng));
        Assert.That(seen, Is.EquivalentTo(new[] { 1, 4 }), "top-2");
        Assert.That(Generator.Pick(logits, probs, new SamplingOptions(TopP: 0.01f), null, rng), Is.EqualTo(1), "a tiny nucleus is greedy");
        Assert.That(Generator.Pick(logits, probs, new SamplingOptions(Temperature: 0), [1], rng), Is.EqualTo(4), "greedy skips excluded tokens");
        seen.Clear();
        for (int i = 0; i < 300; i++)
            seen.Add(Generator.Pick(logits, probs, new SamplingOptions(TopK: 100), [1, 2], rng));
        Assert.That(seen, Is.EquivalentTo(new[] { 0, 3, 4 }), "top-k larger than V keeps every allowed token");
    }

    [TestCase(float.NaN, 0, 1f, "Temperature")]
    [TestCase(1f, -1, 1f, "TopK")]
    [TestCase(1f, 0, 0f, "TopP")]
    [TestCase(1f, 0, 1.5f, "TopP")]
    public void BadOptionsNameTheirProperty(float temperature, int topK, float topP, string property)
    {
        var ex = Assert.Throws<GpuRnnException>(() => new SamplingOptions(temperature, topK, topP).Validate());
        Assert.That(ex!.Message, Does.StartWith(property + " must"), "the library's name, not the runner's flag");
        Assert.That(ex.Parameter, Is.EqualTo(property));
    }
}
