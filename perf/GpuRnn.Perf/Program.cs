using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using GpuRnn;
using GpuRnn.Checkpoints;

// Trains the language model on random token ids and reports time per step and throughput.
// Usage: gpurnn-perf [--cell rnn|gru|lstm] [--recurrence per-step|fused|auto] [--hidden H] [--layers L] [--vocab V] [--batch B] [--seq-len T] [--steps N]
//                    [--warmup W] [--optimizer sgd|adagrad|rmsprop|adam] [--device SPEC] [--json]
//        gpurnn-perf ptx [--out DIR] [--arch sm_70,sm_80,sm_90] [--ptxas PATH] [--format json|markdown]
//        (the static proof of the CUDA path, no GPU needed: PtxCommand.cs)
if (args.Length > 0 && args[0] == "ptx")
    return GpuRnn.Perf.PtxCommand.Run(args[1..]);

var options = new Dictionary<string, string>
{
    ["--cell"] = "rnn", ["--recurrence"] = "auto", ["--hidden"] = "128", ["--layers"] = "1", ["--vocab"] = "65", ["--batch"] = "32", ["--seq-len"] = "64",
    ["--steps"] = "20", ["--warmup"] = "3", ["--optimizer"] = "adam", ["--device"] = "auto",
};
bool json = false;
for (int i = 0; i < args.Length; i++)
{
    if (args[i] == "--json")
        json = true;
    else if (options.ContainsKey(args[i]) && i + 1 < args.Length)
        options[args[i]] = args[++i];
    else
    {
        Console.Error.WriteLine($"gpurnn-perf: unknown or incomplete option '{args[i]}'; options: {string.Join(" ", options.Keys)} --json");
        return 2;
    }
}

try
{
    int Int(string name, int min = 1) => int.TryParse(options[name], NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) && v >= min
        ? v : throw new GpuRnnException($"{name} must be an integer of at least {min} (got '{options[name]}')");
    int hidden = Int("--hidden"), layers = Int("--layers"), vocab = Int("--vocab"), batch = Int("--batch");
    int seqLen = Int("--seq-len"), steps = Int("--steps"), warmup = Int("--warmup", 0);
    var cell = Checkpoint.ParseCell(options["--cell"]);
    var recurrence = RecurrenceNames.Parse(options["--recurrence"]) ?? throw new GpuRnnException($"--recurrence {options["--recurrence"]}: use per-step, fused or auto");
    var kind = options["--optimizer"] switch
    {
        "sgd" => OptimizerKind.Sgd,
        "adagrad" => OptimizerKind.Adagrad,
        "rmsprop" => OptimizerKind.RmsProp,
        "adam" => OptimizerKind.Adam,
        var o => throw new GpuRnnException($"--optimizer {o}: use sgd, adagrad, rmsprop or adam"),
    };

    using var device = GpuDevice.Open(options["--device"]);
    var validation = Validate(device, vocab, layers, cell, recurrence);
    using var model = new RnnModel(device, new ModelConfig(vocab, hidden, layers, Cell: cell), seed: 1) { Recurrence = recurrence };
    using var trainer = new Trainer(model, new OptimizerSettings(kind, kind == OptimizerKind.Sgd ? 0.1f : 1e-3f, ClipNorm: 5f));
    var rng = new Random(1);
    var ids = new int[batch * (seqLen * (warmup + steps) + 1)];
    for (int i = 0; i < ids.Length; i++)
        ids[i] = rng.Next(vocab);
    var batcher = new StreamBatcher(ids, batch, seqLen);

    for (int i = 0; i < warmup; i++)
        trainer.Step(batcher.Next(), readLoss: false);
    device.Accelerator.Synchronize();

    var k = device.Kernels;
    long launches = k.Launches, toDevice = k.BytesToDevice, toHost = k.BytesToHost;
    long managed = GC.GetAllocatedBytesForCurrentThread();
    var times = new double[steps];
    float loss = float.NaN;
    for (int i = 0; i < steps; i++)
    {
        long start = Stopwatch.GetTimestamp();
        bool last = i == steps - 1;
        var result = trainer.Step(batcher.Next(), readLoss: last);
        device.Accelerator.Synchronize();
        times[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        if (last)
            loss = result!.Value;
    }
    managed = GC.GetAllocatedBytesForCurrentThread() - managed;
    Array.Sort(times);
    double median = times[steps / 2], min = times[0];
    var report = new
    {
        device = device.Info.Name,
        kind = device.Info.Spec,
        cell = Checkpoint.CellName(cell),
        recurrence = RecurrenceNames.Name(model.RecurrencePath), // the path that ran (auto resolved)
        hidden, layers, vocab, batch, seqLen, steps, optimizer = options["--optimizer"],
        medianMsPerStep = median,
        minMsPerStep = min,
        tokensPerSecond = batch * seqLen / (median / 1000.0),
        launchesPerStep = (double)(k.Launches - launches) / steps,
        bytesToDevicePerStep = (double)(k.BytesToDevice - toDevice) / steps,
        bytesToHostPerStep = (double)(k.BytesToHost - toHost) / steps,
        managedBytesPerStep = (double)managed / steps,
        deviceMemoryBytes = device.Info.Kind == DeviceKind.Cpu ? (long?)null : device.Accelerator.MemorySize, // the CPU accelerator reports no real size
        lastLoss = loss,
        validation,
    };
    if (json)
    {
        Console.WriteLine(JsonSerializer.Serialize(report));
    }
    else
    {
        Console.WriteLine($"device {report.kind} {report.device}: {report.cell} ({report.recurrence}) H={hidden} L={layers} V={vocab} B={batch} T={seqLen} {report.optimizer}");
        Console.WriteLine($"  {median:F2} ms/step median, {min:F2} min; {report.tokensPerSecond:F0} tokens/s");
        Console.WriteLine($"  {report.launchesPerStep:F1} launches/step; {report.bytesToDevicePerStep:F0} B to device, {report.bytesToHostPerStep:F0} B to host, {report.managedBytesPerStep:F0} managed B per step");
    }
    return 0;
}
catch (GpuRnnException e)
{
    // The library names its parameters; the ones this program takes as flags are named as flags.
    Console.Error.WriteLine("gpurnn-perf: " + (e.Parameter is "device" or "batch" ? $"--{e.Parameter} {e.Problem}" : e.Parameter is "seqLen" ? $"--seq-len {e.Problem}" : e.Message));
    return 1;
}

// Before anything is timed: the first step's loss of a small model (same V and L, H = 16, B = 3,
// T = 7), on the recurrence path to be timed, on this device must match the double-precision reference for the same weights. The
// tolerance allows float32 rounding, and on CUDA the tanh.approx.f32 that XMath.Tanh compiles to.
static object Validate(GpuDevice device, int vocab, int layers, GpuRnn.Kernels.CellKind cell, Recurrence recurrence)
{
    const int h = 16, b = 3, t = 7;
    using var model = new RnnModel(device, new ModelConfig(vocab, h, layers, Cell: cell), seed: 7) { Recurrence = recurrence };
    using var trainer = new Trainer(model, new OptimizerSettings(OptimizerKind.Sgd, 0.1f));
    var rng = new Random(7);
    var window = new TokenWindow(b, t) { Steps = t, ResetState = true };
    var inputs = new int[b, t];
    var targets = new int[b, t];
    for (int s = 0; s < t; s++)
    {
        for (int k = 0; k < b; k++)
        {
            window.Inputs[s * b + k] = inputs[k, s] = rng.Next(vocab);
            window.Targets[s * b + k] = targets[k, s] = rng.Next(vocab);
        }
    }
    trainer.ComputeGradients(window);
    float loss = trainer.ReadLoss();
    var reference = GpuRnn.Tests.Reference.RefModel.FromFloats(vocab, h, layers, model.Layout.Tensors.ToDictionary(x => x.Name, x => model.GetTensor(x.Name)), cell);
    double expected = GpuRnn.Tests.Reference.RefRnn.Loss(reference, inputs, targets);
    double tolerance = (device.Info.Kind == DeviceKind.Cuda ? 1e-3 : 1e-5) * expected;
    if (!(Math.Abs(loss - expected) <= tolerance))
        throw new GpuRnnException($"validation failed on {device.Info}: first-step loss {loss} but the double-precision reference gives {expected} (tolerance {tolerance:G3}); nothing was timed");
    return new { loss, reference = expected, tolerance };
}
