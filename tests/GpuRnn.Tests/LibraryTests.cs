using GpuRnn.Tests.Reference;
using NUnit.Framework;

namespace GpuRnn.Tests;

/// <summary>Host-side pieces: devices, vocabulary, stream batching, layout.</summary>
public sealed class LibraryTests
{
    [Test]
    public void CpuIsAlwaysPresentAndAutoPicksTheBestDevice()
    {
        var devices = GpuDevice.List();
        Assert.That(devices.Select(d => d.Kind), Does.Contain(DeviceKind.Cpu));
        using var auto = GpuDevice.Open("auto");
        var expected = devices.First(d => d.Kind != DeviceKind.OpenCL || d.IsGpu);
        Assert.That(auto.Info, Is.EqualTo(expected));
        using var cpu = GpuDevice.Open("CPU:0");
        Assert.That(cpu.Info.Kind, Is.EqualTo(DeviceKind.Cpu));
    }

    [TestCase("tpu", "unknown kind 'tpu'")]
    [TestCase("cpu:x", "index")]
    [TestCase("cpu:7", "no such device; present: cpu:0")]
    [TestCase("auto:1", "'auto' takes no index")]
    public void BadDeviceSpecsAreOneLineErrors(string spec, string fragment)
    {
        var ex = Assert.Throws<GpuRnnException>(() => GpuDevice.Open(spec));
        Assert.That(ex!.Message, Does.StartWith($"device {spec}:").And.Contain(fragment).And.Not.Contain("\n"));
        Assert.That(ex.Parameter, Is.EqualTo("device"), "the runner prints it as --device");
    }

    [Test]
    public void AbsentKindListsWhatIsPresent()
    {
        var present = GpuDevice.List();
        var missing = new[] { "cuda", "opencl" }.FirstOrDefault(k => present.All(d => DeviceInfo.KindName(d.Kind) != k));
        if (missing is null)
            Assert.Ignore("every kind is present on this machine");
        var ex = Assert.Throws<GpuRnnException>(() => GpuDevice.Open(missing));
        Assert.That(ex!.Message, Does.Contain("present:").And.Contain("cpu:0"));
    }

    [Test]
    public void CharacterVocabularyHasSpecialsFirstThenCodePoints()
    {
        var v = Vocabulary.FromText("ba\u00e9b🙂a");
        Assert.That(v.Tokens, Is.EqualTo(new[] { "<pad>", "<unk>", "<bos>", "<eos>", "a", "b", "é", "🙂" }));
        Assert.That(v.Encode("ab🙂"), Is.EqualTo(new[] { 4, 5, 7 }));
        Assert.That(v.Encode("z"), Is.EqualTo(new[] { v.UnknownId }), "unknown characters map to <unk>");
        Assert.That(v.Decode(v.Encode("ab🙂")), Is.EqualTo("ab🙂"));
    }

    [Test]
    public void VocabularyWithoutUnknownRejectsUnseenCharacters()
    {
        var v = new Vocabulary(["a", "b"]);
        var ex = Assert.Throws<GpuRnnException>(() => v.Encode("abc"));
        Assert.That(ex!.Message, Does.Contain("U+0063"));
        Assert.Throws<GpuRnnException>(() => _ = new Vocabulary(["a", "a"]));
    }

    [TestCase(21, 2, 4)]
    [TestCase(52, 3, 7)]
    [TestCase(10, 5, 3)]
    [TestCase(100, 1, 100)]
    public void StreamWindowsFollowDesignSection6(int length, int batch, int seqLen)
    {
        var ids = Enumerable.Range(0, length).ToArray();
        var expected = RefStream.Windows(ids, batch, seqLen);
        var batcher = new StreamBatcher(ids, batch, seqLen);
        Assert.That(batcher.WindowsPerEpoch, Is.EqualTo(expected.Count));
        for (int epoch = 0; epoch < 2; epoch++)
        {
            for (int w = 0; w < expected.Count; w++)
            {
                var window = batcher.Next();
                var (inputs, targets) = expected[w];
                Assert.That(window.Steps, Is.EqualTo(inputs.GetLength(1)));
                Assert.That(window.ResetState, Is.EqualTo(w == 0), "the state resets at each epoch start only");
                for (int t = 0; t < window.Steps; t++)
                {
                    for (int b = 0; b < batch; b++)
                    {
                        Assert.That(window.Inputs[t * batch + b], Is.EqualTo(inputs[b, t]));
                        Assert.That(window.Targets[t * batch + b], Is.EqualTo(targets[b, t]));
                    }
                }
            }
            Assert.That(batcher.Epoch, Is.EqualTo(epoch + 1));
        }
    }

    [Test]
    public void TooLittleDataSaysTheMinimum()
    {
        var ex = Assert.Throws<GpuRnnException>(() => _ = new StreamBatcher(new int[7], 4, 8));
        Assert.That(ex!.Message, Does.Contain("at least 8"));
    }

    [Test]
    public void LayoutMatchesTheReferenceOrderAndPyTorchShapes()
    {
        var layout = new ParameterLayout(11, 5, 2);
        var reference = RefModel.Layout(11, 5, 2);
        Assert.That(layout.Tensors.Select(t => t.Name), Is.EqualTo(reference.Select(r => r.Name)));
        Assert.That(layout.Tensors.Select(t => t.Shape), Is.EqualTo(reference.Select(r => r.Shape)));
        Assert.That(layout.Count, Is.EqualTo(5 * 11 + 25 + 10 + 25 + 25 + 10 + 11 * 5 + 11));
        Assert.That(layout.Tensors.Zip(layout.Tensors.Skip(1)).All(p => p.First.Offset + p.First.Length == p.Second.Offset), Is.True, "contiguous");
    }
}
