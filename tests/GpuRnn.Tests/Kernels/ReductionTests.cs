using GpuRnn.Tests.Reference;
using NUnit.Framework;

namespace GpuRnn.Tests.Kernels;

[TestFixtureSource(typeof(TestDevices), nameof(TestDevices.Specs))]
public sealed class ReductionTests(string spec) : DeviceFixture(spec)
{
    [TestCase(1, 1)]
    [TestCase(17, 3)]
    [TestCase(3, 65)]
    [TestCase(65, 33)]
    public void ColumnSumsWriteBothBiasGradients(int rows, int cols)
    {
        var rng = new Random(rows + 31 * cols);
        var x = TestData.Uniform(rng, rows * cols);
        var s1 = Poisoned(cols);
        var s2 = Poisoned(cols);
        K.ColumnSum(rows, cols, Put(x), s1, s2);
        var expected = RefOps.ColumnSums(TestData.ToDouble(x), rows, cols);
        var mag = RefOps.ColumnSums(GemmTests.Abs(x), rows, cols);
        AssertClose(Get(s1), expected, j => rows * U * mag[j], "column sums");
        Assert.That(Get(s2), Is.EqualTo(Get(s1)));
    }

    [TestCase(1, false)]
    [TestCase(17, true)]
    [TestCase(1000, false)]
    [TestCase(4097, true)]
    public void SumAndSumOfSquaresOverOneGroup(int length, bool squares)
    {
        var rng = new Random(length);
        var x = TestData.Uniform(rng, length);
        var result = Poisoned(3);
        K.ReduceSum(length, squares, Put(x), result, 2);
        double expected = x.Sum(v => squares ? (double)v * v : v);
        double mag = x.Sum(v => squares ? (double)v * v : Math.Abs(v));
        // Each thread sums about length/G terms, then log2(G) tree levels: length·u·Σ|·| bounds both.
        AssertClose(Get(result)[2..], [expected], _ => (length + 1) * U * mag, $"sum (squares={squares})");
        Assert.That(Get(result)[..2].All(float.IsNaN), Is.True, "other slots are untouched");
    }

    [Test]
    public void ReductionIsBitReproducible()
    {
        var x = TestData.Uniform(new Random(3), 12345);
        var view = Put(x);
        var r = Poisoned(1);
        K.ReduceSum(x.Length, true, view, r, 0);
        float first = Get(r)[0];
        for (int i = 0; i < 3; i++)
        {
            K.ReduceSum(x.Length, true, view, r, 0);
            Assert.That(Get(r)[0], Is.EqualTo(first));
        }
    }
}
