using ILGPU;
using ILGPU.Runtime;

namespace GpuRnn.Kernels;

/// <summary>
/// A block of columns of a row-major matrix: columns [<paramref name="Column"/>, Column + width) of rows
/// <paramref name="Stride"/> floats apart (the forward half [P, 0:H] or the reverse half [P, H:2H] of a
/// bidirectional layer's [P, 2H] outputs; a whole [P, H] matrix is <c>new RowBlock(view, H, 0)</c>).
/// </summary>
public readonly record struct RowBlock(ArrayView<float> View, int Stride, int Column);

public sealed partial class DeviceKernels
{
    /// <summary>
    /// The reverse direction of a bidirectional layer (DESIGN.md §3d) runs the ordinary forward recurrence
    /// over each sequence reversed IN PLACE: time-major row p = t·B + b of the reversed window is row
    /// map[p] = (length_b − 1 − t)·B + b of the original, and −1 past the sequence's end (padding, no
    /// input). This kernel moves rows between the two orders, one column block at a time:
    /// <c>dst[i, :] (+)= map[i] ≥ 0 ? src[map[i], :] : 0</c> (<paramref name="mapped"/> = 0: map[i] = i, a
    /// plain column-block copy, for joining the two directions side by side). Thread per (i, j).
    /// <para>
    /// Its backward is itself: on a sequence's true rows the map is its own inverse (reading t from the end
    /// twice is t), so the gradient w.r.t. src is the same gather of the gradient w.r.t. dst, added; rows
    /// past a sequence's end were read by nobody and get nothing.
    /// </para>
    /// </summary>
    private static void GatherRowsKernel(Index1D index, int width, int mapped, ArrayView<int> map,
        ArrayView<float> src, int srcStride, int srcColumn, int accumulate, ArrayView<float> dst, int dstStride, int dstColumn)
    {
        int i = index / width;
        int j = index - i * width;
        int row = mapped != 0 ? map[i] : i;
        float v = row >= 0 ? src[(long)row * srcStride + srcColumn + j] : 0f;
        long d = (long)i * dstStride + dstColumn + j;
        dst[d] = accumulate != 0 ? dst[d] + v : v; // a flag, not β·dst: β = 0 must not turn a NaN left in dst into NaN
    }

    private Action<AcceleratorStream, Index1D, int, int, ArrayView<int>, ArrayView<float>, int, int, int, ArrayView<float>, int, int> gatherRows = null!;

    private void LoadReverse() =>
        gatherRows = Accelerator.LoadAutoGroupedKernel<Index1D, int, int, ArrayView<int>, ArrayView<float>, int, int, int, ArrayView<float>, int, int>(GatherRowsKernel);

    /// <summary>
    /// <c>destination[i] = source[map[i]]</c> for <paramref name="rows"/> rows of <paramref name="width"/> columns (0 where
    /// map[i] &lt; 0; with <paramref name="accumulate"/>, added to what is there): the forward of a reversal when
    /// <paramref name="map"/> is a reversal map, and its backward too (the same call with <paramref name="accumulate"/>:
    /// see the kernel). An invalid <paramref name="map"/> copies row i to row i.
    /// </summary>
    public void GatherRows(int rows, int width, ArrayView<int> map, RowBlock source, bool accumulate, RowBlock destination)
    {
        Require(rows > 0 && width > 0, $"gather sizes must be positive (rows={rows}, width={width}).");
        Require(!map.IsValid || map.Length >= rows, $"the row map holds {map.Length} entries but {rows} are needed.");
        RequireBlock(source, rows, width, nameof(source));
        RequireBlock(destination, rows, width, nameof(destination));
        Count();
        gatherRows(Accelerator.DefaultStream, rows * width, width, map.IsValid ? 1 : 0, map.IsValid ? map : noLengths.View,
            source.View, source.Stride, source.Column, accumulate ? 1 : 0, destination.View, destination.Stride, destination.Column);
    }

    /// <summary>
    /// The reversal map of a right-padded window (see <see cref="GatherRowsKernel"/>): map[t·B + b] = (length_b − 1 − t)·B + b
    /// for t &lt; length_b, −1 after, into <paramref name="map"/> [steps·B]; empty <paramref name="lengths"/>: every sequence
    /// fills the window. Host side: it goes up with the window.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A length is outside 1 … <paramref name="steps"/>.</exception>
    public static void ReversalMap(ReadOnlySpan<int> lengths, int batch, int steps, Span<int> map)
    {
        if (!lengths.IsEmpty && lengths.Length != batch)
            throw new ArgumentException($"{lengths.Length} lengths for a batch of {batch}.", nameof(lengths));
        if (map.Length < steps * batch)
            throw new ArgumentException($"the map holds {map.Length} entries but {steps * batch} are needed.", nameof(map));
        for (int b = 0; b < batch; b++)
        {
            int length = lengths.IsEmpty ? steps : lengths[b];
            if (length < 1 || length > steps)
                throw new ArgumentOutOfRangeException(nameof(lengths), $"sequence {b} has length {length}; it must be between 1 and {steps}.");
            for (int t = 0; t < steps; t++)
                map[t * batch + b] = t < length ? (length - 1 - t) * batch + b : -1;
        }
    }

    private static void RequireBlock(RowBlock block, int rows, int width, string name)
    {
        Require(block.Column >= 0 && block.Column + width <= block.Stride, $"{name}: columns {block.Column} … {block.Column + width - 1} do not fit rows of {block.Stride}.");
        RequireLength(block.View, (long)(rows - 1) * block.Stride + block.Column + width, name);
    }
}
