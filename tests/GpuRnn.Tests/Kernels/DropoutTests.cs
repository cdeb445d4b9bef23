using GpuRnn.Kernels;
using GpuRnn.Tests.Reference;
using NUnit.Framework;

namespace GpuRnn.Tests.Kernels;

[TestFixtureSource(typeof(TestDevices), nameof(TestDevices.Specs))]
public sealed class DropoutTests(string spec) : DeviceFixture(spec)
{
    /// <summary>
    /// Forward and backward against the double reference (the hash written out from its definition): a kept element
    /// is x·(float)(1/(1 − p)), two roundings, so |error| ≤ 2u·|x/(1 − p)|; a dropped one is exactly 0. In place too.
    /// </summary>
    [TestCase(1, 0.5f)]
    [TestCase(3, 0.1f)]
    [TestCase(17, 0.3f)]
    [TestCase(33, 0.9f)]
    [TestCase(65, 0.25f)]
    [TestCase(4097, 0.5f)]
    public void ForwardAndBackwardMatchTheReference(int n, float p)
    {
        var rng = new Random(n);
        var mask = DropoutMask.Of(p, seed: n, step: 7, site: 1);
        var expected = new double[n];
        foreach (bool backward in new[] { false, true })
        {
            var x = TestData.Uniform(rng, n);
            for (int i = 0; i < n; i++)
                expected[i] = x[i] * RefOps.DropoutFactor(mask.Key, i, p);
            var y = Poisoned(n);
            if (backward)
                K.DropoutBackward(n, mask, Put(x), y);
            else
                K.DropoutForward(n, mask, Put(x), y);
            AssertClose(Get(y), expected, i => 2 * U * Math.Abs(expected[i]), backward ? "backward" : "forward");
            Assert.That(Enumerable.Range(0, n).Where(i => expected[i] == 0).Select(i => Get(y)[i]), Is.All.EqualTo(0f), "dropped elements are exactly 0");
            var inPlace = Put(x);
            K.DropoutForward(n, mask, inPlace, inPlace);
            Assert.That(Get(inPlace), Is.EqualTo(Get(y)).AsCollection, "in place gives the same");
        }
    }

    /// <summary>
    /// The kept fraction is 1 − p: over n = 65,536 elements its standard deviation is √(p(1−p)/n) ≤ 0.002, so 5σ = 0.01
    /// bounds it (a wrong threshold, a biased hash or an ignored index misses by far more); p = 0 keeps every element unscaled.
    /// Another step or site gives another mask; the same key the same one.
    /// </summary>
    [Test]
    public void KeepsOneMinusPAndDependsOnEveryPartOfTheKey()
    {
        const int n = 65536;
        var x = Enumerable.Repeat(1f, n).ToArray();
        var input = Put(x);
        float[] Run(DropoutMask m)
        {
            var y = Poisoned(n);
            K.DropoutForward(n, m, input, y);
            return Get(y);
        }
        foreach (float p in new[] { 0.1f, 0.5f, 0.8f })
        {
            double kept = Run(DropoutMask.Of(p, 1, 1, 0)).Count(v => v != 0) / (double)n;
            Assert.That(kept, Is.EqualTo(1 - p).Within(0.01), $"kept fraction at p = {p}");
        }
        Assert.That(Run(DropoutMask.Of(0f, 1, 1, 0)), Is.All.EqualTo(1f), "p = 0 keeps everything, unscaled");
        var a = Run(DropoutMask.Of(0.5f, 1, 1, 0));
        Assert.That(Run(DropoutMask.Of(0.5f, 1, 1, 0)), Is.EqualTo(a).AsCollection, "same key, same mask");
        foreach (var other in new[] { DropoutMask.Of(0.5f, 2, 1, 0), DropoutMask.Of(0.5f, 1, 2, 0), DropoutMask.Of(0.5f, 1, 1, 1) })
        {
            int same = Run(other).Zip(a).Count(z => z.First == z.Second);
            Assert.That(same / (double)n, Is.EqualTo(0.5).Within(0.01), "another seed, step or site: an independent mask (half agree)");
        }
    }

    [Test]
    public void OutOfRangeProbabilityIsRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => DropoutMask.Of(1f, 1, 1, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => DropoutMask.Of(-0.1f, 1, 1, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => DropoutMask.Of(float.NaN, 1, 1, 0));
    }
}
