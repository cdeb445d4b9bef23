using GpuRnn.Kernels;
using ILGPU;
using ILGPU.Runtime;

namespace GpuRnn.Cli;

/// <summary>
/// The global L2 norm of a training step's gradients, read before the update so that a NaN or
/// infinite gradient stops the run before it reaches the weights. One reduction launch and one
/// 4-byte copy per step. (The trainer computes the same sum when clipping by norm; an accessor for
/// it would save both.)
/// </summary>
internal sealed class GradientNorm : IDisposable
{
    private readonly DeviceKernels k;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> squared; // [1] Σ g²

    public GradientNorm(GpuDevice device)
    {
        k = device.Kernels;
        squared = device.Accelerator.Allocate1D<float>(1);
    }

    /// <summary>‖g‖₂ of <paramref name="gradients"/> [P] (infinite when Σ g² overflows float).</summary>
    public float Of(ArrayView<float> gradients)
    {
        k.ReduceSum(gradients.Length, squares: true, gradients, squared.View, 0);
        Span<float> host = stackalloc float[1];
        k.Download(squared.View, host);
        return MathF.Sqrt(host[0]);
    }

    public void Dispose() => squared.Dispose();
}
