using ILGPU;
using ILGPU.Runtime;

namespace GpuRnn;

/// <summary>
/// Every device buffer one training step of a (B, T) window needs, allocated once and owned here
/// (DESIGN.md §4). Positions are time-major: p = t·B + b.
/// </summary>
internal sealed class Activations : IDisposable
{
    private readonly List<IDisposable> owned = [];

    /// <param name="encoder">An encoder's activations: no output layer, so no logits buffer.</param>
    public Activations(Accelerator accelerator, ParameterLayout layout, bool classifier, int batch, int capacity, bool encoder = false)
    {
        Batch = batch;
        Capacity = capacity;
        int v = layout.V, h = layout.H, p = batch * capacity;
        Ids = Own(accelerator.Allocate1D<int>(p));                    // [T, B]
        Targets = Own(accelerator.Allocate1D<int>(p));                // [T, B]
        TokenOffsets = Own(accelerator.Allocate1D<int>(v + 1));       // [V + 1]
        TokenPositions = Own(accelerator.Allocate1D<int>(p));         // [T·B]
        X = Own(accelerator.Allocate1D<float>((long)p * h));          // [T, B, H] input term of the current layer
        Hidden = new MemoryBuffer1D<float, Stride1D.Dense>[layout.L];
        for (int k = 0; k < layout.L; k++)
        {
            Hidden[k] = Own(accelerator.Allocate1D<float>((long)(capacity + 1) * batch * h)); // [T + 1, B, H]; slot 0 is h_0
            Hidden[k].MemSetToZero();
        }
        // A language model has logits at every position, [T, B, V]; a classifier one row per sequence, [B, C].
        Logits = Own(accelerator.Allocate1D<float>(encoder ? 1 : classifier ? (long)batch * layout.Outputs : (long)p * v)); // overwritten by dlogits
        LastRows = Own(accelerator.Allocate1D<int>(batch));          // [B] row p of each sequence's last true step
        Labels = Own(accelerator.Allocate1D<int>(batch));            // [B]
        Lengths = Own(accelerator.Allocate1D<int>(batch));           // [B] true length of each padded sequence
        HLast = Own(accelerator.Allocate1D<float>((long)batch * h)); // [B, H] last true state of the top layer
        DLast = Own(accelerator.Allocate1D<float>((long)batch * h)); // [B, H] its gradient
        DH0 = Own(accelerator.Allocate1D<float>((long)layout.L * batch * h)); // [L, B, H] gradient w.r.t. each layer's h_0 (encoder–decoder)
        RowLoss = Own(accelerator.Allocate1D<float>(p));              // [T·B]
        DH = Own(accelerator.Allocate1D<float>((long)p * h));         // [T, B, H] gradient w.r.t. a layer's output
        DZ = Own(accelerator.Allocate1D<float>((long)p * h));         // [T, B, H] gradient w.r.t. a layer's pre-activation
        Scalars = Own(accelerator.Allocate1D<float>(2));              // [loss sum, squared gradient norm]
        HostOffsets = new int[v + 1];
        HostPositions = new int[p];
        HostRows = new int[batch];
    }

    public int Batch { get; }
    public int Capacity { get; }
    public MemoryBuffer1D<int, Stride1D.Dense> Ids { get; }
    public MemoryBuffer1D<int, Stride1D.Dense> Targets { get; }
    public MemoryBuffer1D<int, Stride1D.Dense> TokenOffsets { get; }
    public MemoryBuffer1D<int, Stride1D.Dense> TokenPositions { get; }
    public MemoryBuffer1D<float, Stride1D.Dense> X { get; }
    public MemoryBuffer1D<float, Stride1D.Dense>[] Hidden { get; }
    public MemoryBuffer1D<float, Stride1D.Dense> Logits { get; }
    public MemoryBuffer1D<float, Stride1D.Dense> RowLoss { get; }
    public MemoryBuffer1D<float, Stride1D.Dense> DH { get; }
    public MemoryBuffer1D<float, Stride1D.Dense> DZ { get; }
    public MemoryBuffer1D<float, Stride1D.Dense> Scalars { get; }
    public MemoryBuffer1D<int, Stride1D.Dense> LastRows { get; }
    public MemoryBuffer1D<int, Stride1D.Dense> Labels { get; }
    public MemoryBuffer1D<int, Stride1D.Dense> Lengths { get; }
    public MemoryBuffer1D<float, Stride1D.Dense> HLast { get; }
    public MemoryBuffer1D<float, Stride1D.Dense> DLast { get; }
    public MemoryBuffer1D<float, Stride1D.Dense> DH0 { get; }
    public int[] HostRows { get; }
    public int[] HostOffsets { get; }
    public int[] HostPositions { get; }

    public const int LossSlot = 0;
    public const int NormSlot = 1;

    /// <summary>h_t of layer k as a [B, H] view (t = 0 is the carried-in state).</summary>
    public ArrayView<float> HiddenAt(int layer, int t, int hidden)
    {
        long bh = (long)Batch * hidden;
        return Hidden[layer].View.SubView(t * bh, bh);
    }

    /// <summary>Device bytes held (what <see cref="TrainingMemory"/> must predict).</summary>
    public long Bytes => owned.OfType<MemoryBuffer>().Sum(m => m.LengthInBytes);

    private T Own<T>(T buffer) where T : IDisposable
    {
        owned.Add(buffer);
        return buffer;
    }

    public void Dispose()
    {
        for (int i = owned.Count - 1; i >= 0; i--)
            owned[i].Dispose();
        owned.Clear();
    }
}
