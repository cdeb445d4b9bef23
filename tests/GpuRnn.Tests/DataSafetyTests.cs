using GpuRnn.Checkpoints;
using GpuRnn.Cli;
using NUnit.Framework;

namespace GpuRnn.Tests;

/// <summary>
/// Nothing a user has is overwritten by surprise (issue 13 part 1), each case through the real runner: a resumed run
/// continues in its own file, --out never replaces the data or a file that is not a checkpoint, a resume refuses
/// other data, swapped label columns are caught, damaged weights are refused at load, and a runaway loss stops the run.
/// </summary>
public sealed class DataSafetyTests : CliHarness
{
    private static readonly string[] Quick = ["--val-fraction", "0", "--optimizer", "adam", "--lr", "0.01"];

    [Test]
    public void ResumeContinuesInTheFileItResumes()
    {
        Assert.That(Train([.. Quick, "--data", Data, "--steps", "2", "--out", P("a.safetensors")]).Code, Is.EqualTo(ExitCodes.Ok));
        Assert.That(Train([.. Quick, "--data", Data, "--steps", "2", "--seed", "7", "--out", P("b.safetensors")]).Code, Is.EqualTo(ExitCodes.Ok));
        var other = File.ReadAllBytes(P("b.safetensors"));
        string cwd = Environment.CurrentDirectory;
        try
        {
            // From the folder where the default --out (out/model.safetensors) would land, had the resume used it.
            Environment.CurrentDirectory = Dir;
            var r = Run("train", "--device", "cpu", "--resume", P("a.safetensors"), "--data", Data, "--steps", "4", "--length", "0");
            Assert.That(r.Code, Is.EqualTo(ExitCodes.Ok), r.Err);
        }
        finally
        {
            Environment.CurrentDirectory = cwd;
        }
        Assert.That(Checkpoint.Load(P("a.safetensors")).Training!.Step, Is.EqualTo(4), "the resumed file moved on");
        Assert.That(File.Exists(P("out/model.safetensors")), Is.False, "nothing written to the default --out");
        Assert.That(File.ReadAllBytes(P("b.safetensors")), Is.EqualTo(other));

        var elsewhere = Run("train", "--device", "cpu", "--resume", P("a.safetensors"), "--data", Data, "--steps", "5", "--length", "0", "--out", P("c.safetensors"));
        Assert.That(elsewhere.Code, Is.EqualTo(ExitCodes.Ok), elsewhere.Err);
        Assert.That(Checkpoint.Load(P("c.safetensors")).Training!.Step, Is.EqualTo(5), "--out still wins when given");
        Assert.That(Checkpoint.Load(P("a.safetensors")).Training!.Step, Is.EqualTo(4));
    }

    [Test]
    public void OutEqualToTheDataIsRefused()
    {
        var before = File.ReadAllBytes(Data);
        AssertOneLineError(Train("--data", Data, "--steps", "1", "--out", Data), $"--out {Data}: is the training data");
        Assert.That(File.ReadAllBytes(Data), Is.EqualTo(before));
    }

    [Test]
    public void OutThatIsNotACheckpointIsNeverOverwritten()
    {
        File.WriteAllText(P("notes.txt"), "my notes");
        AssertOneLineError(Train("--data", Data, "--steps", "1", "--out", P("notes.txt")), $"--out {P("notes.txt")}: exists and is not a GpuRnn checkpoint");
        Assert.That(File.ReadAllText(P("notes.txt")), Is.EqualTo("my notes"));

        Assert.That(Train([.. Quick, "--data", Data, "--steps", "1", "--out", P("m.safetensors")]).Code, Is.EqualTo(ExitCodes.Ok));
        Assert.That(Train([.. Quick, "--data", Data, "--steps", "2", "--out", P("m.safetensors")]).Code, Is.EqualTo(ExitCodes.Ok), "a checkpoint may be replaced");
        Assert.That(Checkpoint.Load(P("m.safetensors")).Training!.Step, Is.EqualTo(2));
    }

    [Test]
    public void ResumeOnOtherDataIsRefusedUnlessAllowed()
    {
        Assert.That(Train([.. Quick, "--data", Data, "--steps", "2", "--out", P("m.safetensors")]).Code, Is.EqualTo(ExitCodes.Ok));
        var before = File.ReadAllBytes(P("m.safetensors"));
        File.WriteAllText(P("other.txt"), Text.Replace('e', 'a'));
        var refused = Run("train", "--device", "cpu", "--resume", P("m.safetensors"), "--data", P("other.txt"), "--steps", "4", "--length", "0");
        AssertOneLineError(refused, $"{P("m.safetensors")} was trained on {Data} (600 bytes, sha256 ", $"but --data is {P("other.txt")}", "--allow-other-data");
        Assert.That(File.ReadAllBytes(P("m.safetensors")), Is.EqualTo(before));

        File.Copy(Data, P("moved.txt"));
        var moved = Run("train", "--device", "cpu", "--resume", P("m.safetensors"), "--data", P("moved.txt"), "--steps", "3", "--length", "0");
        Assert.That(moved.Code, Is.EqualTo(ExitCodes.Ok), "the same contents under another name: " + moved.Err);

        var allowed = Run("train", "--device", "cpu", "--resume", P("m.safetensors"), "--data", P("other.txt"), "--steps", "4", "--length", "0", "--allow-other-data");
        Assert.That(allowed.Code, Is.EqualTo(ExitCodes.Ok), allowed.Err);
        Assert.That(Checkpoint.Load(P("m.safetensors")).Data!.Name, Is.EqualTo(P("other.txt")), "the checkpoint now records the data it was last trained on");
    }

    [Test]
    public void SwappedLabelColumnsAreNamed()
    {
        var rows = Enumerable.Range(0, 12).Select(i => $"message number {i} about {(i % 2 == 0 ? "lunch" : "prizes")}\t{(i % 2 == 0 ? "ham" : "spam")}");
        File.WriteAllText(P("swapped.tsv"), string.Join("\n", rows) + "\n");
        AssertOneLineError(Train("--mode", "labeled", "--data", P("swapped.tsv"), "--steps", "1", "--out", P("m.safetensors")),
            P("swapped.tsv"), "the first column has 12 distinct values in 12 rows and the second only 2: the columns look swapped");
        Assert.That(File.Exists(P("m.safetensors")), Is.False);

        var texts = Enumerable.Range(0, 12).Select(i => $"label {i}\tsome text {i}");
        File.WriteAllText(P("texts.tsv"), string.Join("\n", texts) + "\n");
        AssertOneLineError(Train("--mode", "labeled", "--data", P("texts.tsv"), "--steps", "1"), P("texts.tsv"), "has 12 distinct values in 12 rows, which looks like text");
    }

    [Test]
    public void NonFiniteWeightsAreRefusedAtLoad([Values(float.NaN, float.PositiveInfinity)] float bad)
    {
        Assert.That(Train([.. Quick, "--data", Data, "--steps", "1", "--out", P("m.safetensors")]).Code, Is.EqualTo(ExitCodes.Ok));
        var file = SafeTensorsFile.Read(P("m.safetensors"));
        var tensors = file.Tensors.Select(t => t.Name == "rnn.weight_hh_l0" ? new TensorEntry(t.Name, t.Shape, [bad, bad, bad, .. t.Data[3..]]) : t).ToList();
        new SafeTensorsFile(tensors, file.Metadata).Write(P("damaged.safetensors"));

        string message = "tensor 'rnn.weight_hh_l0' holds 3 values that are not finite (NaN or infinity) of 64";
        AssertOneLineError(Run("sample", "--device", "cpu", "--checkpoint", P("damaged.safetensors"), "--length", "5"), P("damaged.safetensors"), message);
        AssertOneLineError(Run("eval", "--device", "cpu", "--checkpoint", P("damaged.safetensors"), "--data", Data), message);
        AssertOneLineError(Train("--data", Data, "--steps", "2", "--init", P("damaged.safetensors"), "--out", P("n.safetensors")), message);
        var info = Run("info", "--checkpoint", P("damaged.safetensors"));
        Assert.That(info.Code, Is.EqualTo(ExitCodes.Ok), info.Err);
        Assert.That(info.Out, Does.Contain("damaged:    rnn.weight_hh_l0 holds 3 values that are not finite"));
    }

    [Test]
    public void RunawayFiniteLossStopsTheRunAndKeepsTheLastCheckpoint()
    {
        Assert.That(Train([.. Quick, "--data", Data, "--steps", "1", "--out", P("m.safetensors")]).Code, Is.EqualTo(ExitCodes.Ok));
        var good = File.ReadAllBytes(P("m.safetensors"));
        Assert.That(TrainRun.DivergenceCeiling(2.5f, 30), Is.EqualTo(10f * MathF.Log(30)).Within(1e-4), "below ln C the ceiling is 10·ln C");
        Assert.That(TrainRun.DivergenceCeiling(50f, 30), Is.EqualTo(500f), "above it, 10 × the first loss");

        // A run whose first loss is normal and which then blows up (SGD with a huge rate, no clipping) stops on the
        // ceiling while the loss is still finite, before that update reaches the weights.
        var r = Run("train", "--device", "cpu", "--init", P("m.safetensors"), "--data", Data, "--batch", "3", "--seq-len", "7", "--steps", "40",
            "--val-fraction", "0", "--optimizer", "sgd", "--lr", "40", "--clip-norm", "0", "--length", "0", "--checkpoint-every", "0", "--out", P("m.safetensors"));
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Diverged), r.Err + r.Out);
        Assert.That(r.Err, Does.Match("^gpurnn: training diverged at step [0-9]+: the loss [0-9.E+]+ is above [0-9.]+, 10 × the larger of this run's first loss and ln\\(outputs\\); the last good checkpoint .*m.safetensors was kept"));
        Assert.That(File.ReadAllBytes(P("m.safetensors")), Is.EqualTo(good));
    }
}
