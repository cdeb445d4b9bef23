using GpuRnn.Kernels;
using NUnit.Framework;

namespace GpuRnn.Tests.Kernels;

[TestFixtureSource(typeof(TestDevices), nameof(TestDevices.Specs))]
public sealed class EmbeddingTests(string spec) : DeviceFixture(spec)
{
    /// <summary>
    /// x[p, j] = W_ih[j, ids[p]] + b_ih[j] + b_hh[j], b_hh only on columns below bHhColumns (−1: the default, all):
    /// 34 of 51 columns is a GRU with H = 17 (b_hr and b_hz folded, b_hn not).
    /// </summary>
    [TestCase(1, 1, 1, -1)]
    [TestCase(17, 3, 11, -1)]
    [TestCase(33, 17, 5, -1)]
    [TestCase(3, 65, 40, -1)]
    [TestCase(33, 51, 5, 34)]
    [TestCase(17, 12, 11, 12)]
    [TestCase(3, 4, 7, 0)]
    public void GatherAddsTheTokenColumnAndBothBiases(int positions, int hidden, int vocab, int bHhColumns)
    {
        var rng = new Random(positions + hidden + vocab);
        var ids = Enumerable.Range(0, positions).Select(_ => rng.Next(vocab)).ToArray();
        var w = TestData.Uniform(rng, hidden * vocab);
        var bIh = TestData.Uniform(rng, hidden);
        var bHh = TestData.Uniform(rng, hidden);
        var x = Poisoned(positions * hidden);
        if (bHhColumns < 0)
            K.EmbeddingForward(positions, hidden, vocab, Put(ids), Put(w), Put(bIh), Put(bHh), x);
        else
            K.EmbeddingForward(positions, hidden, vocab, Put(ids), Put(w), Put(bIh), Put(bHh), x, bHhColumns);
        double Folded(int h) => bHhColumns < 0 || h < bHhColumns ? bHh[h] : 0;

        var expected = new double[positions * hidden];
        var mag = new double[positions * hidden];
        for (int p = 0; p < positions; p++)
        {
            for (int h = 0; h < hidden; h++)
            {
                double col = w[h * vocab + ids[p]]; // W_ih · onehot(ids[p]) is column ids[p]
                expected[p * hidden + h] = col + bIh[h] + Folded(h);
                mag[p * hidden + h] = Math.Abs(col) + Math.Abs(bIh[h]) + Math.Abs(Folded(h));
            }
        }
        AssertClose(Get(x), expected, i => 2 * U * mag[i], "embedding forward");
    }

    /// <summary>dW_ih[h, v] = Σ over positions holding v of dz[p, h]; tokens absent from the batch get 0.</summary>
    [TestCase(1, 1, 1)]
    [TestCase(17, 3, 11)]
    [TestCase(65, 33, 5)]
    [TestCase(21, 2, 40)]
    public void ScatterSumsThePositionsOfEachToken(int positions, int hidden, int vocab)
    {
        var rng = new Random(positions * 3 + hidden + vocab);
        var ids = Enumerable.Range(0, positions).Select(_ => rng.Next(Math.Max(1, vocab - 2))).ToArray(); // the last tokens never appear
        var dz = TestData.Uniform(rng, positions * hidden);
        var offsets = new int[vocab + 1];
        var lists = new int[positions];
        DeviceKernels.TokenPositions(ids, vocab, offsets, lists);
        var dW = Poisoned(hidden * vocab);
        K.EmbeddingBackward(hidden, vocab, Put(offsets), Put(lists), Put(dz), dW);

        var expected = new double[hidden * vocab];
        var mag = new double[hidden * vocab];
        for (int p = 0; p < positions; p++)
        {
            for (int h = 0; h < hidden; h++)
            {
                expected[h * vocab + ids[p]] += dz[p * hidden + h];
                mag[h * vocab + ids[p]] += Math.Abs(dz[p * hidden + h]);
            }
        }
        AssertClose(Get(dW), expected, i => positions * U * mag[i], "embedding backward");
    }

    [Test]
    public void TokenPositionsIsAStableCountingSort()
    {
        int[] ids = [2, 0, 2, -1, 1, 2, 0];
        var offsets = new int[5];
        var positions = new int[ids.Length];
        DeviceKernels.TokenPositions(ids, 4, offsets, positions);
        Assert.That(offsets, Is.EqualTo(new[] { 0, 2, 3, 6, 6 }));
        Assert.That(positions[..6], Is.EqualTo(new[] { 1, 6, 4, 0, 2, 5 })); // the padding position 3 is left out
    }

    [Test]
    public void TokenPositionsRejectsAnIdOutsideTheVocabulary()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => DeviceKernels.TokenPositions([0, 4], 4, new int[5], new int[2]));
    }
}
