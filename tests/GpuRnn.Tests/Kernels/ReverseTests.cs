using GpuRnn.Kernels;
using NUnit.Framework;

namespace GpuRnn.Tests.Kernels;

/// <summary>The row gather of kernels/Reverse.cs against plain loops: a copy, bit for bit, so the tolerance is 0.</summary>
[TestFixtureSource(typeof(TestDevices), nameof(TestDevices.Specs))]
public sealed class ReverseTests(string spec) : DeviceFixture(spec)
{
    /// <summary>
    /// Reversal of a padded window (lengths 1 … T, one full) into a column block of a wider, NaN-poisoned matrix,
    /// then the same call accumulating (the backward): every true row comes back to its place twice, padding rows get 0.
    /// </summary>
    [TestCase(1, 1, 1)]
    [TestCase(3, 5, 2)]
    [TestCase(17, 3, 5)]
    [TestCase(33, 4, 1)]
    public void ReversalGathersEachSequenceFromItsOwnEnd(int width, int steps, int batch)
    {
        var rng = new Random(width + steps);
        int[] lengths = [.. Enumerable.Range(0, batch).Select(b => b == 0 ? steps : 1 + rng.Next(steps))];
        int rows = steps * batch, stride = 2 * width + 1;
        var map = new int[rows];
        DeviceKernels.ReversalMap(lengths, batch, steps, map);
        var src = Enumerable.Range(0, rows * width).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
        src[0] = 0f;
        var dst = Poisoned((long)rows * stride);
        K.GatherRows(rows, width, Put(map), new RowBlock(Put(src), width, 0), accumulate: false, new RowBlock(dst, stride, width));
        var got = Get(dst);
        for (int t = 0; t < steps; t++)
        {
            for (int b = 0; b < batch; b++)
            {
                int q = (t * batch) + b;
                int from = t < lengths[b] ? ((lengths[b] - 1 - t) * batch) + b : -1;
                for (int j = 0; j < width; j++)
                {
                    float expected = from >= 0 ? src[(from * width) + j] : 0f;
                    Assert.That(got[(q * stride) + width + j], Is.EqualTo(expected), $"row {q} column {j}");
                    Assert.That(float.IsNaN(got[(q * stride) + j]), $"columns outside the block stay untouched (row {q})");
                }
            }
        }
        var twice = Put(src.ToArray());
        K.GatherRows(rows, width, Put(map), new RowBlock(dst, stride, width), accumulate: true, new RowBlock(twice, width, 0));
        var sum = Get(twice);
        for (int q = 0; q < rows; q++)
        {
            bool padding = map[q] < 0;
            for (int j = 0; j < width; j++)
                Assert.That(sum[(q * width) + j], Is.EqualTo(padding ? src[(q * width) + j] : 2 * src[(q * width) + j]), $"row {q}: reversed twice is the identity");
        }
    }
}
