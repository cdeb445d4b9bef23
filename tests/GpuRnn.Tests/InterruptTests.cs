using System.Diagnostics;
using GpuRnn.Checkpoints;
using GpuRnn.Cli;
using NUnit.Framework;

namespace GpuRnn.Tests;

/// <summary>
/// Issue 6, nothing lost: a stopped run saves its full resume state and resumes bit-identically;
/// divergence keeps the last good checkpoint; a second run on the same --out is refused; a writer
/// killed at any point leaves the previous checkpoint loadable. In-process with a stop token, and
/// with the real gpurnn program and real signals where the platform has them.
/// </summary>
public sealed class InterruptTests : CliHarness
{
    /// <summary>stdout that cancels the stop token once a line starts with <c>step N/</c>.</summary>
    private sealed class StopAfter(int step, CancellationTokenSource stop) : StringWriter
    {
        public override void WriteLine(string? value)
        {
            base.WriteLine(value);
            if (value is not null && value.StartsWith($"step {step}/", StringComparison.Ordinal))
                stop.Cancel();
        }
    }

    private static string[] Common(string data) => ["--data", data, "--val-fraction", "0.1", "--eval-every", "2", "--optimizer", "adam", "--lr", "0.01"];

    [Test]
    public void StopAfterAStepSavesResumeStateAndResumesBitIdentically()
    {
        Assert.That(Train([.. Common(Data), "--steps", "9", "--out", P("straight.safetensors")]).Code, Is.EqualTo(ExitCodes.Ok));

        using var stop = new CancellationTokenSource();
        var stdout = new StopAfter(4, stop);
        var stderr = new StringWriter();
        string stopped = P("new/folder/stopped.safetensors");
        int code = App.Run(["train", .. Merge(Tiny, [.. Common(Data), "--steps", "9", "--checkpoint-every", "3", "--out", stopped])], stdout, stderr, stop.Token);
        Assert.That(code, Is.EqualTo(ExitCodes.Interrupted), stderr.ToString());
        Assert.That(stdout.ToString(), Does.Contain($"interrupted after step 4: saved the full resume state to {stopped}; continue with: gpurnn train --resume {stopped} --data {Data} --steps 9"));
        Assert.That(Checkpoint.Load(stopped).Training!.Step, Is.EqualTo(4), "saved after the step in progress, not at the last scheduled save (3)");
        Assert.That(File.Exists(stopped + ".lock"), Is.False, "the lock is released");

        var resumed = Run("train", "--device", "cpu", "--resume", stopped, "--data", Data, "--steps", "9", "--length", "0", "--out", P("resumed.safetensors"));
        Assert.That(resumed.Code, Is.EqualTo(ExitCodes.Ok), resumed.Err);
        var a = Checkpoint.Load(P("straight.safetensors"));
        var b = Checkpoint.Load(P("resumed.safetensors"));
        foreach (var (name, w) in a.Weights)
            Assert.That(b.Weights[name], Is.EqualTo(w).AsCollection, $"{name} must be bit-identical");
        foreach (var (name, s) in a.OptimizerSlots)
            Assert.That(b.OptimizerSlots[name], Is.EqualTo(s).AsCollection, $"{name} must be bit-identical");
        Assert.That(b.Training, Is.EqualTo(a.Training));
    }

    [Test]
    public void StopBeforeTheFirstStepLeavesTheOutputUntouched()
    {
        Assert.That(Train("--data", Data, "--steps", "1", "--val-fraction", "0", "--out", P("m.safetensors")).Code, Is.EqualTo(ExitCodes.Ok));
        var earlier = File.ReadAllBytes(P("m.safetensors")); // an earlier model (train refuses to overwrite anything else)
        using var stop = new CancellationTokenSource();
        stop.Cancel();
        var r = Run(stop.Token, ["train", .. Merge(Tiny, ["--data", Data, "--steps", "5", "--json", "--out", P("m.safetensors")])]);
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Interrupted), r.Err);
        Assert.That(r.Out, Does.Contain("\"event\":\"interrupted\"").And.Contain("was not touched"));
        Assert.That(File.ReadAllBytes(P("m.safetensors")), Is.EqualTo(earlier));
    }

    /// <summary>
    /// A finite loss with an infinite gradient norm: decoder rows scaled up to 1e30 keep the softmax
    /// finite (the max is subtracted) but dH = dlogits·W_dec, and so Σ g², overflow float.
    /// </summary>
    [Test]
    public void InfiniteGradientNormStopsTheRunAndKeepsTheLastCheckpoint()
    {
        var vocab = Vocabulary.FromText(Text);
        var layout = new ParameterLayout(vocab.Count, 4, 1);
        var rng = new Random(2);
        var tensors = layout.Tensors.Select(t => new TensorEntry(t.Name, t.Shape, TestData.Uniform(rng, t.Length, 0.1))).ToList();
        var decoder = tensors.Single(t => t.Name == "decoder.weight").Data;
        for (int v = 0; v < vocab.Count; v++)
            decoder[v * 4] = 1e30f * (v + 1) / vocab.Count;
        new SafeTensorsFile(tensors, new Dictionary<string, string> { [Checkpoint.VocabKey] = System.Text.Json.JsonSerializer.Serialize(vocab.Tokens) }).Write(P("init.safetensors"));
        File.Copy(P("init.safetensors"), P("d.safetensors")); // the last good checkpoint
        var lastGood = File.ReadAllBytes(P("d.safetensors"));

        var r = Run("train", "--device", "cpu", "--init", P("init.safetensors"), "--data", Data, "--batch", "3", "--seq-len", "7", "--steps", "5",
            "--val-fraction", "0", "--optimizer", "sgd", "--lr", "0.1", "--length", "0", "--out", P("d.safetensors"));
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Diverged), r.Err);
        Assert.That(r.Err, Does.Match("^gpurnn: training diverged at step 1: the gradient norm is Infinity \\(loss [0-9.E+]+\\); the last good checkpoint .*d.safetensors was kept"));
        Assert.That(r.Err.TrimEnd('\n').Split('\n'), Has.Length.EqualTo(1));
        Assert.That(File.ReadAllBytes(P("d.safetensors")), Is.EqualTo(lastGood));
    }

    [Test]
    public void DivergenceAfterACheckpointKeepsThatCheckpoint()
    {
        // SGD with a huge rate after the first save: the loss turns non-finite within a few steps.
        Assert.That(Train("--data", Data, "--steps", "2", "--val-fraction", "0", "--optimizer", "sgd", "--lr", "0.1", "--out", P("m.safetensors")).Code, Is.EqualTo(0));
        var before = File.ReadAllBytes(P("m.safetensors"));
        var r = Run("train", "--device", "cpu", "--init", P("m.safetensors"), "--data", Data, "--batch", "3", "--seq-len", "7", "--steps", "30", "--val-fraction", "0",
            "--optimizer", "sgd", "--lr", "3e38", "--clip-norm", "0", "--length", "0", "--out", P("m.safetensors"));
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Diverged), r.Err);
        Assert.That(r.Err, Does.Match("^gpurnn: training diverged at step [0-9]+: the (loss|gradient norm) is"));
        Assert.That(File.ReadAllBytes(P("m.safetensors")), Is.EqualTo(before), "the last good checkpoint is kept byte for byte");
    }

    // ------------------------------------------------------------------------------------ lock file

    [Test]
    public void SecondRunOnTheSameOutIsRefusedWhileTheFirstHoldsTheLock()
    {
        string held;
        using (var first = OutputLock.Acquire(P("sub/m.safetensors")))
        {
            held = first.Path;
            Assert.That(File.ReadAllText(held).Trim(), Is.EqualTo(Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            AssertOneLineError(Train("--data", Data, "--steps", "2", "--out", P("sub/m.safetensors")),
                $"--out {P("sub/m.safetensors")} is being written by another gpurnn train (PID {Environment.ProcessId}; lock file {held})");
            Assert.That(File.Exists(P("sub/m.safetensors")), Is.False);
            Assert.That(Train("--data", Data, "--steps", "2", "--val-fraction", "0", "--out", P("sub/other.safetensors")).Code, Is.EqualTo(ExitCodes.Ok), "another --out is fine");
        }
        Assert.That(File.Exists(held), Is.False, "released and deleted");
        Assert.That(Train("--data", Data, "--steps", "2", "--val-fraction", "0", "--out", P("sub/m.safetensors")).Code, Is.EqualTo(ExitCodes.Ok));
    }

    [Test]
    public void StaleLockOfADeadProcessIsTakenOver()
    {
        using (var dead = Process.Start(new ProcessStartInfo(DotnetCommand.Host(), "--version") { RedirectStandardOutput = true })!)
        {
            dead.WaitForExit();
            File.WriteAllText(P("m.safetensors.lock"), dead.Id + "\n");
        }
        var r = Train("--data", Data, "--steps", "2", "--val-fraction", "0", "--out", P("m.safetensors"));
        Assert.That(r.Code, Is.EqualTo(ExitCodes.Ok), r.Err);
        Assert.That(File.Exists(P("m.safetensors.lock")), Is.False);
    }

    // ------------------------------------------------------------------------------------ the real program

    /// <summary>The gpurnn program built beside the tests (the test project references it), or the test is ignored.</summary>
    private static string Program()
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "gpurnn.dll");
        if (!File.Exists(dll) || !File.Exists(Path.Combine(AppContext.BaseDirectory, "gpurnn.runtimeconfig.json")))
            Assert.Ignore($"gpurnn.dll is not built beside the tests ({AppContext.BaseDirectory})");
        return dll;
    }

    /// <summary>Starts the program; its output is drained in the background (so it never blocks on a full pipe) and dropped.</summary>
    private static Process Start(params string[] args) => StartCollecting([], args);

    /// <summary>Starts the program with stdout and stderr lines collected into <paramref name="lines"/> (lock it to read).</summary>
    private static Process StartCollecting(List<string> lines, params string[] args)
    {
        var info = new ProcessStartInfo(DotnetCommand.Host()) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (SigIntIgnoredHere())
        {
            // A job started with '&' by a non-interactive shell (a CI script, nohup) runs with SIGINT ignored, and a
            // child inherits that: gpurnn then rightly keeps ignoring Ctrl-C, as any program started that way does.
            // These tests are about gpurnn's own handling, so the child starts with the default disposition.
            info.FileName = "env";
            info.ArgumentList.Add("--default-signal=INT");
            info.ArgumentList.Add(DotnetCommand.Host());
        }
        info.ArgumentList.Add(Program());
        foreach (string a in args)
            info.ArgumentList.Add(a);
        var process = new Process { StartInfo = info };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (lines) lines.Add(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (lines) lines.Add(e.Data); };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    /// <summary>Whether this process runs with SIGINT ignored (Linux: bit 2 of SigIgn in /proc/self/status).</summary>
    private static bool SigIntIgnoredHere()
    {
        if (!OperatingSystem.IsLinux())
            return false;
        string? line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("SigIgn:", StringComparison.Ordinal));
        return line is not null && (Convert.ToUInt64(line["SigIgn:".Length..].Trim(), 16) & 2UL) != 0;
    }

    /// <summary>Sends SIGINT with the system's <c>kill</c> (the test project allows no P/Invoke); returns its exit code.</summary>
    private static int Interrupt(int pid)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill") { ArgumentList = { "-INT", pid.ToString(System.Globalization.CultureInfo.InvariantCulture) }, UseShellExecute = false })!;
        kill.WaitForExit();
        return kill.ExitCode;
    }

    private static void RequireSignals()
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS())
            Assert.Ignore("sending POSIX signals needs Linux or macOS");
    }

    /// <summary>Waits until <paramref name="path"/> exists (the child has saved once), failing after a minute.</summary>
    private static void WaitForFile(string path, Process child)
    {
        var clock = Stopwatch.StartNew();
        while (!File.Exists(path))
        {
            Assert.That(child.HasExited, Is.False, "the child exited before saving");
            Assert.That(clock.Elapsed.TotalSeconds, Is.LessThan(60), "no checkpoint within a minute");
            Thread.Sleep(20);
        }
    }

    private string[] LongRun(string output, int hidden = 8) =>
        ["train", .. Merge(Tiny, ["--hidden", $"{hidden}", "--data", Data, "--steps", "1000000", "--val-fraction", "0", "--checkpoint-every", "3", "--out", output])];

    /// <summary>SIGINT to the real program: the step finishes, a resumable checkpoint is written, exit code 130; meanwhile a second run on the same --out is refused.</summary>
    [Test]
    public void SigIntSavesAResumableCheckpointAndExits130()
    {
        RequireSignals();
        var lines = new List<string>();
        string output = P("m.safetensors");
        using var child = StartCollecting(lines, LongRun(output));
        try
        {
            WaitForFile(output, child);
            AssertOneLineError(Train("--data", Data, "--steps", "2", "--out", output), $"is being written by another gpurnn train (PID {child.Id}");

            Assert.That(Interrupt(child.Id), Is.EqualTo(0));
            Assert.That(child.WaitForExit(60_000), Is.True, "exits after the current step");
            child.WaitForExit(); // flushes the output handlers
            string all;
            lock (lines)
                all = string.Join("\n", lines);
            Assert.That(child.ExitCode, Is.EqualTo(ExitCodes.Interrupted), all);
            Assert.That(all, Does.Contain("gpurnn: SIGINT: stopping after the current step").And.Contain($"saved the full resume state to {output}"));
            var c = Checkpoint.Load(output);
            Assert.That(all, Does.Contain($"interrupted after step {c.Training!.Step}:"));
            Assert.That(File.Exists(output + ".lock"), Is.False);
            var resumed = Run("train", "--device", "cpu", "--resume", output, "--data", Data, "--steps", $"{c.Training.Step + 2}", "--length", "0", "--out", output);
            Assert.That(resumed.Code, Is.EqualTo(ExitCodes.Ok), resumed.Err);
        }
        finally
        {
            if (!child.HasExited)
                child.Kill();
        }
    }

    /// <summary>A second SIGINT quits at once; whatever the moment, the last complete checkpoint still loads.</summary>
    [Test]
    public void SecondSigIntQuitsAtOnceAndTheCheckpointStillLoads()
    {
        RequireSignals();
        string output = P("m.safetensors");
        using var child = Start(LongRun(output, hidden: 128));
        try
        {
            WaitForFile(output, child);
            Assert.That(Interrupt(child.Id), Is.EqualTo(0));
            Thread.Sleep(30); // two signals sent back to back could merge into one
            Assert.That(Interrupt(child.Id), Is.EqualTo(0));
            Assert.That(child.WaitForExit(30_000), Is.True);
            Assert.That(child.ExitCode, Is.EqualTo(ExitCodes.Interrupted));
            Assert.That(Checkpoint.Load(output).Training!.Step, Is.GreaterThanOrEqualTo(3));
        }
        finally
        {
            if (!child.HasExited)
                child.Kill();
        }
    }

    /// <summary>
    /// The writer killed (SIGKILL) at random moments of a run that saves a ~1 MB checkpoint every
    /// step: the file at --out is always a complete earlier checkpoint, and the next run takes over
    /// the lock the killed one left behind.
    /// </summary>
    [Test]
    public void KillingTheWriterAtRandomPointsNeverCorruptsTheCheckpoint()
    {
        string output = P("m.safetensors");
        var rng = new Random(11);
        long lastStep = 0;
        for (int round = 0; round < 3; round++)
        {
            string[] args = round == 0
                ? ["train", .. Merge(Tiny, ["--hidden", "256", "--data", Data, "--steps", "1000000", "--val-fraction", "0", "--checkpoint-every", "1", "--out", output])]
                : ["train", "--device", "cpu", "--resume", output, "--data", Data, "--steps", "1000000", "--checkpoint-every", "1", "--length", "0", "--out", output];
            // This round's child must load the checkpoint, take over the lock and save once before it is killed:
            // wait for a write newer than the last round's.
            var previous = File.Exists(output) ? File.GetLastWriteTimeUtc(output) : DateTime.MinValue;
            using var child = Start(args);
            try
            {
                var clock = Stopwatch.StartNew();
                while (!File.Exists(output) || File.GetLastWriteTimeUtc(output) <= previous)
                {
                    Assert.That(child.HasExited, Is.False, $"round {round}: the child exited early (code {(child.HasExited ? child.ExitCode : 0)})");
                    Assert.That(clock.Elapsed.TotalSeconds, Is.LessThan(60), $"round {round}: no save within a minute");
                    Thread.Sleep(10);
                }
                Thread.Sleep(rng.Next(0, 300));
            }
            finally
            {
                child.Kill();
                child.WaitForExit();
            }
            var c = Checkpoint.Load(output); // never a partial file
            Assert.That(c.Training!.Step, Is.GreaterThan(lastStep), $"round {round}: the run resumed, took over the lock and saved");
            lastStep = c.Training.Step;
            Assert.That(File.Exists(output + ".lock"), Is.True, "a killed run leaves its lock behind; the next round must take it over");
        }
        Assert.That(lastStep, Is.GreaterThan(0));
    }
}
