using GpuRnn.Tests.Reference;
using NUnit.Framework;

namespace GpuRnn.Tests.Kernels;

[TestFixtureSource(typeof(TestDevices), nameof(TestDevices.Specs))]
public sealed class SoftmaxCrossEntropyTests(string spec) : DeviceFixture(spec)
{
    /// <summary>
    /// Relative error allowed in the probabilities and the log-sum-exp: V terms summed in float32
    /// plus a few roundings, times 4 for exp/log, which are accurate to a couple of ulps on every backend.
    /// </summary>
    private static double Rel(int vocab) => 4 * (vocab + 4) * U;

    [TestCase(1, 1, 0.0)]
    [TestCase(3, 17, 3.0)]
    [TestCase(17, 3, 3.0)]
    [TestCase(65, 65, 5.0)]
    [TestCase(4, 33, 1000.0)] // logits ~ ±1000: exp would overflow without subtracting the row max
    public void MatchesReferenceWithIgnoredRows(int rows, int vocab, double spread)
    {
        var rng = new Random(rows * 7 + vocab);
        var logits = TestData.Uniform(rng, rows * vocab, spread);
        var targets = Enumerable.Range(0, rows).Select(r => r % 3 == 1 ? -1 : rng.Next(vocab)).ToArray();
        int counted = targets.Count(t => t >= 0);
        float scale = counted > 0 ? 1f / counted : 0f;
        var rowLoss = Poisoned(rows);
        var dlogits = Poisoned(rows * vocab);
        K.SoftmaxCrossEntropy(rows, vocab, scale, Put(logits), Put(targets), rowLoss, dlogits);

        var (refLoss, refD) = RefOps.SoftmaxCrossEntropy(TestData.ToDouble(logits), rows, vocab, targets, scale);
        // A row's loss is log Σ exp(l − max) − (l_t − max): absolute error about Rel·(1 + |l_t − max|).
        AssertClose(Get(rowLoss), refLoss, r => Rel(vocab) * (1 + refLoss[r]), "row loss");
        // dlogits = (p − onehot)·scale with p off by Rel relatively.
        AssertClose(Get(dlogits), refD, i => Rel(vocab) * scale * (Math.Abs(refD[i]) / Math.Max(scale, 1e-30) + 1), "dlogits");
        Assert.That(Get(rowLoss).All(float.IsFinite), Is.True);
    }

    [Test]
    public void GradientMayOverwriteTheLogits()
    {
        var logits = new float[] { 1, 2, 3, 0, 0, 0 };
        var view = Put(logits);
        var rowLoss = Poisoned(2);
        K.SoftmaxCrossEntropy(2, 3, 0.5f, view, Put(new[] { 2, -1 }), rowLoss, view);
        var (refLoss, refD) = RefOps.SoftmaxCrossEntropy(TestData.ToDouble(logits), 2, 3, [2, -1], 0.5);
        AssertClose(Get(view), refD, _ => 1e-6, "in-place dlogits");
        AssertClose(Get(rowLoss), refLoss, _ => 1e-6, "in-place loss");
    }
}
