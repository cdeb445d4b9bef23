using ILGPU;
using ILGPU.Runtime;

namespace GpuRnn;

/// <summary>
/// The single owner of one workspace's device buffers (DESIGN.md §4), and the host arrays that go
/// with them. A workspace's constructor asks it for every buffer; built without an accelerator it only
/// counts the bytes and hands out empty views, so the memory estimate (<see cref="TrainingMemory"/>)
/// runs the very code that sizes the buffers instead of a hand-kept mirror of it.
/// </summary>
internal sealed class DeviceBuffers : IDisposable
{
    private readonly Accelerator? accelerator;
    private readonly List<MemoryBuffer> owned = [];

    /// <param name="accelerator">Where to allocate; null only counts (see <see cref="Counting"/>).</param>
    public DeviceBuffers(Accelerator? accelerator) => this.accelerator = accelerator;

    /// <summary>A counter: allocates nothing, not even the host arrays.</summary>
    public static DeviceBuffers Counting() => new(null);

    /// <summary>Device bytes handed out so far.</summary>
    public long Bytes { get; private set; }

    /// <summary>A device buffer of <paramref name="length"/> floats, zeroed when <paramref name="zeroed"/>.</summary>
    public ArrayView<float> Floats(long length, bool zeroed = false) => Allocate<float>(length, zeroed);

    /// <summary>A device buffer of <paramref name="length"/> ints.</summary>
    public ArrayView<int> Ints(long length) => Allocate<int>(length, false);

    /// <summary>A host array of <paramref name="length"/> ints (empty when counting).</summary>
    public int[] HostInts(long length) => accelerator is null ? [] : new int[length];

    private ArrayView<T> Allocate<T>(long length, bool zeroed) where T : unmanaged
    {
        Bytes += length * System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
        if (accelerator is null)
            return default;
        var buffer = accelerator.Allocate1D<T>(length);
        owned.Add(buffer);
        if (zeroed)
            buffer.MemSetToZero();
        return buffer.View;
    }

    /// <summary>Frees the buffers in reverse order of allocation.</summary>
    public void Dispose()
    {
        for (int i = owned.Count - 1; i >= 0; i--)
            owned[i].Dispose();
        owned.Clear();
    }
}
