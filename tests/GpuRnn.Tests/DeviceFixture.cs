using GpuRnn.Kernels;
using ILGPU;
using ILGPU.Runtime;
using NUnit.Framework;

namespace GpuRnn.Tests;

/// <summary>Base of every fixture that runs on each accelerator present (the test body is written once).</summary>
public abstract class DeviceFixture
{
    private readonly List<IDisposable> buffers = [];

    protected DeviceFixture(string spec) => Spec = spec;

    protected string Spec { get; }

    protected GpuDevice Device { get; private set; } = null!;

    protected DeviceKernels K => Device.Kernels;

    /// <summary>float32 unit roundoff, 2^-24: the error bound of one rounding.</summary>
    protected const double U = 1.0 / (1 << 24);

    [OneTimeSetUp]
    public void OpenDevice() => Device = TestDevices.Get(Spec);

    [TearDown]
    public void FreeBuffers()
    {
        for (int i = buffers.Count - 1; i >= 0; i--)
            buffers[i].Dispose();
        buffers.Clear();
    }

    /// <summary>A device copy of <paramref name="host"/>, freed after the test.</summary>
    protected ArrayView<T> Put<T>(T[] host) where T : unmanaged
    {
        var buffer = Device.Accelerator.Allocate1D(host);
        buffers.Add(buffer);
        return buffer.View;
    }

    /// <summary>A device buffer of n elements filled with NaN (float) so that a kernel that skips an element is caught.</summary>
    protected ArrayView<float> Poisoned(long n)
    {
        var host = new float[n];
        Array.Fill(host, float.NaN);
        return Put(host);
    }

    protected static float[] Get(ArrayView<float> view) => ((ArrayView1D<float, Stride1D.Dense>)view).GetAsArray1D();

    /// <summary>
    /// Every parameter gradient of <paramref name="trainer"/>'s last window against the reference's, with the stream-mode
    /// whole-step bound of TrainerTests: 1e-5 of the tensor's largest entry (plus the device's tanh error) and 1e-5 relative.
    /// With <paramref name="everyTensorLearns"/>, a tensor whose reference gradient is all zero fails. Returns the largest
    /// |engine − reference| / max|reference| over the tensors (what reports quote).
    /// </summary>
    protected double AssertGradients(Trainer trainer, RnnModel model, Dictionary<string, double[]> expected, string what = "", bool everyTensorLearns = false)
    {
        const double rtol = 1e-5, atol = 1e-5;
        double worst = 0;
        foreach (var t in model.Layout.Tensors)
        {
            var e = expected[t.Name];
            double scale = e.Max(Math.Abs);
            if (everyTensorLearns)
                Assert.That(scale, Is.GreaterThan(0), $"{t.Name} gets a gradient");
            var actual = trainer.GetGradient(t.Name);
            AssertClose(actual, e, i => (atol + TestDevices.TanhTolerance(Device)) * scale + rtol * Math.Abs(e[i]), $"{what} {t.Name}");
            if (scale > 0)
                worst = Math.Max(worst, actual.Select((a, i) => Math.Abs(a - e[i])).Max() / scale);
        }
        return worst;
    }

    /// <summary>The model's parameters in double, by name: what the reference starts from.</summary>
    protected static Dictionary<string, double[]> WeightsInDouble(RnnModel model) =>
        model.Layout.Tensors.ToDictionary(t => t.Name, t => model.GetTensor(t.Name).Select(x => (double)x).ToArray());

    /// <summary>Asserts |actual − expected| ≤ tolerance[i] element-wise, reporting the worst element.</summary>
    /// <summary>
    /// Resumes <paramref name="loaded"/> (saved from <paramref name="trainer"/> on <paramref name="model"/> reading
    /// <paramref name="batcher"/>) with <paramref name="again"/>, a fresh copy of the batcher, and checks that two
    /// more steps of both leave every tensor bit-identical.
    /// </summary>
    protected void AssertResumesIdentically(GpuRnn.Checkpoints.Checkpoint loaded, OptimizerSettings optimizer, RnnModel model, Trainer trainer,
        ITrainingData batcher, ITrainingData again, string what)
    {
        using var resumedModel = loaded.CreateModel(Device);
        using var resumed = new Trainer(resumedModel, optimizer);
        loaded.RestoreTrainer(resumed, resumedModel);
        again.Seek(loaded.Training!.Epoch, loaded.Training.Position);
        for (int i = 0; i < 2; i++)
        {
            trainer.Step(batcher.Next(), readLoss: false);
            resumed.Step(again.Next(), readLoss: false);
        }
        foreach (var t in model.Layout.Tensors)
            Assert.That(resumedModel.GetTensor(t.Name), Is.EqualTo(model.GetTensor(t.Name)).AsCollection, $"{what} {t.Name} after resuming");
    }

    protected static void AssertClose(float[] actual, double[] expected, Func<int, double> tolerance, string what)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), what + ": length");
        int worst = -1;
        double worstExcess = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            double err = Math.Abs(actual[i] - expected[i]);
            double excess = double.IsNaN(actual[i]) ? double.PositiveInfinity : err - tolerance(i);
            if (excess > worstExcess)
            {
                worstExcess = excess;
                worst = i;
            }
        }
        Assert.That(worst, Is.EqualTo(-1),
            () => $"{what}: element {worst} is {actual[worst]:R}, expected {expected[worst]:R} (tolerance {tolerance(worst):G3})");
    }
}
