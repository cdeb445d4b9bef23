using System.CommandLine;
using GpuRnn.Checkpoints;
using GpuRnn.Kernels;

namespace GpuRnn.Cli;

/// <summary><c>gpurnn train</c>: trains a language model on a text file (or the embedded corpus) and saves a checkpoint.</summary>
internal static class TrainCommand
{
    public static Command Create(TextWriter stdout, CancellationToken stop)
    {
        var data = App.Opt<string?>("--data", "UTF-8 text file to train on; without it, the embedded Tiny Shakespeare corpus.");
        var cell = App.Opt("--cell", "Recurrent cell: rnn (Elman, tanh), gru or lstm (PyTorch's nn.RNN, nn.GRU, nn.LSTM).", "rnn");
        var hidden = App.Opt("--hidden", "Hidden units per layer H.", 128);
        var layers = App.Opt("--layers", "Stacked recurrent layers L.", 2);
        var batch = App.Opt("--batch", "Parallel streams B.", 32);
        var seqLen = App.Opt("--seq-len", "Truncated-BPTT window T.", 64);
        var steps = App.Opt("--steps", "Optimizer updates (one per window); 0 = use --epochs.", 0);
        var epochs = App.Opt("--epochs", "Passes over the training data when --steps is 0.", 1);
        var optimizer = App.Opt("--optimizer", "sgd, adam, adagrad or rmsprop (torch.optim defaults).", "adam");
        var lr = App.Opt("--lr", "Learning rate.", 2e-3f);
        var momentum = App.Opt("--momentum", "SGD momentum.", 0f);
        var clipNorm = App.Opt("--clip-norm", "Clip gradients to this global L2 norm; 0 = off.", 5f);
        var clipValue = App.Opt("--clip-value", "Clamp each gradient to ±X; 0 = off.", 0f);
        var seed = App.Opt("--seed", "Seed of the weight initialisation.", 1);
        var device = App.Opt("--device", "auto, cuda, opencl or cpu, with an optional :index.", "auto");
        var recurrence = App.RecurrenceOpt();
        var valFraction = App.Opt("--val-fraction", "Held-out tail of the data for validation; 0 = none.", 0.05);
        var evalEvery = App.Opt("--eval-every", "Validate every N steps (and at the end); 0 = only at the end.", 100);
        var checkpointEvery = App.Opt("--checkpoint-every", "Save a checkpoint every N steps (and at the end); 0 = only at the end.", 500);
        var output = App.Opt("--out", "Checkpoint file to write (the folder is created); with --resume, the resumed file. A file that is not a GpuRnn checkpoint is never overwritten.", Path.Combine("out", "model.safetensors"));
        var init = App.Opt<string?>("--init", "Start from this checkpoint's weights and vocabulary, with a fresh optimizer.");
        var resume = App.Opt<string?>("--resume", "Continue this checkpoint's run exactly (weights, optimizer, step, data position, hidden state), writing to it unless --out says otherwise.");
        var allowOtherData = App.Opt("--allow-other-data", "With --resume: continue even though --data differs from the data the checkpoint was trained on.", false);
        var log = App.Opt<string?>("--log", "Write metrics to this file, one JSON object per line.");
        var json = App.Opt("--json", "Machine-readable JSON lines on stdout instead of the progress display.", false);
        var tokenizer = App.Opt("--tokenizer", "char or word.", "char");
        var sampleLength = App.Opt("--length", "Tokens (characters or words) of the sample a language model prints after training, as `sample --length`; 0 = none.", 300);
        var temperature = App.Opt("--temperature", "Softmax temperature of that sample. The default 0.8 is a little more conservative than the model's own distribution (sample's default of 1), so a short run's preview reads better; 0 or less is greedy.", 0.8f);
        var mode = App.Opt("--mode", "stream (continuous text), lines (one sequence per line), labeled (label<TAB>text: many-to-one classifier), pairs (source<TAB>target: encoder–decoder).", "stream");
        var attention = App.Opt("--attention", "pairs mode: none, dot, general (Luong attention over the encoder's outputs) or additive (Bahdanau: the context feeds each decoder step's input); README \"Attention\".", "none");
        var maxVocab = App.Opt("--max-vocab", "Keep the N most frequent tokens, the rest become <unk>; 0 = all.", 0);
        var minCount = App.Opt("--min-count", "Keep tokens seen at least N times, the rest become <unk>.", 1);
        var dropout = App.Opt("--dropout", "Training only: drop each output of every layer with this probability as the layer above or the output layer reads it (kept ones × 1/(1−p)); 0 = off.", 0f);
        var lrSchedule = App.Opt("--lr-schedule", "constant; step (× --lr-decay every --lr-decay-every steps after --lr-decay-after steps); cosine (to --lr-min over the run's steps); plateau (× --lr-decay after more than --plateau-patience evaluations without a new best validation loss).", "constant");
        var lrDecay = App.Opt<double?>("--lr-decay", "Factor of each decay: default 0.97 for step (char-rnn's), 0.5 for plateau.");
        var lrDecayAfter = App.Opt("--lr-decay-after", "step schedule: steps at --lr before the first decay.", 0L);
        var lrDecayEvery = App.Opt<long?>("--lr-decay-every", "step schedule: steps between decays; default one epoch (char-rnn decays every epoch).");
        var lrMin = App.Opt("--lr-min", "The lowest rate any schedule reaches (cosine's final rate).", 0.0);
        var cosineSteps = App.Opt<long?>("--cosine-steps", "cosine schedule: the steps the cosine spans; default this run's total (give the final total to a first run you will extend with --resume).");
        var plateauPatience = App.Opt("--plateau-patience", "plateau schedule: evaluations without improvement tolerated before each reduction.", 3);
        var keepBest = App.Opt("--keep-best", "Also write the model of the best validation loss so far beside --out, as NAME.best.safetensors (weights, no resume state).", false);
        var earlyStop = App.Opt("--early-stop", "Stop (exit 0) after N evaluations in a row without a new best validation loss; 0 = never.", 0);
        var bidirectional = App.Opt("--bidirectional", "Read each sequence both ways (PyTorch's bidirectional=True): the classifier (--mode labeled) or the encoder (--mode pairs).", false);
        var cmd = new Command("train", "Train a recurrent model (Elman RNN, GRU or LSTM; language model, classifier or encoder–decoder) and save a checkpoint.")
        {
            data, cell, hidden, layers, batch, seqLen, steps, epochs, optimizer, lr, momentum, clipNorm, clipValue, seed, device, recurrence,
            valFraction, evalEvery, checkpointEvery, output, init, resume, allowOtherData, log, json, tokenizer, sampleLength, temperature, mode, attention, maxVocab, minCount,
            dropout, lrSchedule, lrDecay, lrDecayAfter, lrDecayEvery, lrMin, cosineSteps, plateauPatience, keepBest, earlyStop,
            bidirectional,
        };
        cmd.SetAction(r =>
        {
            if (r.GetValue(init) is not null && r.GetValue(resume) is not null)
                throw new GpuRnnException("--init and --resume exclude each other: --init starts a new run from weights, --resume continues a run");
            if (App.Given(r, steps) && App.Given(r, epochs))
                throw new GpuRnnException("--steps and --epochs exclude each other");
            var run = new TrainRun
            {
                DataPath = r.GetValue(data),
                Cell = Checkpoint.ParseCell(r.GetValue(cell)!),
                Hidden = r.GetValue(hidden),
                Layers = r.GetValue(layers),
                Batch = r.GetValue(batch),
                SeqLen = r.GetValue(seqLen),
                Steps = r.GetValue(steps),
                Epochs = r.GetValue(epochs),
                Optimizer = new OptimizerSettings(Checkpoint.ParseOptimizer(r.GetValue(optimizer)!), r.GetValue(lr), r.GetValue(momentum), r.GetValue(clipNorm), r.GetValue(clipValue)),
                Seed = r.GetValue(seed),
                Device = r.GetValue(device)!,
                Recurrence = App.ParseRecurrence(r.GetValue(recurrence)!),
                ValFraction = r.GetValue(valFraction),
                EvalEvery = r.GetValue(evalEvery),
                CheckpointEvery = r.GetValue(checkpointEvery),
                Out = r.GetValue(output)!,
                Init = r.GetValue(init),
                Resume = r.GetValue(resume),
                AllowOtherData = r.GetValue(allowOtherData),
                LogPath = r.GetValue(log),
                Json = r.GetValue(json),
                Tokenizer = Tokenizer.Parse(r.GetValue(tokenizer)!),
                SampleLength = r.GetValue(sampleLength),
                Temperature = r.GetValue(temperature),
                Mode = Checkpoint.ParseMode(r.GetValue(mode)!),
                Attention = AttentionNames.Parse(r.GetValue(attention)!),
                MaxVocab = r.GetValue(maxVocab),
                MinCount = r.GetValue(minCount),
                Dropout = r.GetValue(dropout),
                ScheduleKind = LearningRateSchedule.Parse(r.GetValue(lrSchedule)!),
                LrDecay = r.GetValue(lrDecay),
                LrDecayAfter = r.GetValue(lrDecayAfter),
                LrDecayEvery = r.GetValue(lrDecayEvery),
                LrMin = r.GetValue(lrMin),
                CosineSteps = r.GetValue(cosineSteps),
                PlateauPatience = r.GetValue(plateauPatience),
                KeepBest = r.GetValue(keepBest),
                EarlyStop = r.GetValue(earlyStop),
                Bidirectional = r.GetValue(bidirectional),
                Given = name => cmd.Options.First(o => o.Name == name) is { } o && App.Given(r, o),
                Stop = stop,
            };
            return run.Execute(stdout);
        });
        return cmd;
    }

    internal static void RequirePositive(int value, string flag)
    {
        if (value < 1)
            throw new GpuRnnException($"{flag} must be a positive integer (got {value})");
    }
}

/// <summary>One training run: validated settings, then the loop.</summary>
internal sealed class TrainRun
{
    public string? DataPath { get; init; }
    public CellKind Cell { get; set; }
    public int Hidden { get; set; }
    public int Layers { get; set; }
    public int Batch { get; set; }
    public int SeqLen { get; set; }
    public int Steps { get; init; }
    public int Epochs { get; init; }
    public OptimizerSettings Optimizer { get; set; } = null!;
    public int Seed { get; set; }
    public required string Device { get; init; }
    public Recurrence Recurrence { get; init; }
    public double ValFraction { get; set; }
    public int EvalEvery { get; init; }
    public int CheckpointEvery { get; init; }
    public required string Out { get; set; }
    public string? Init { get; init; }
    public string? Resume { get; init; }
    public bool AllowOtherData { get; init; }
    public string? LogPath { get; init; }
    public bool Json { get; init; }
    public TokenizerKind Tokenizer { get; set; }
    public int SampleLength { get; init; }
    public float Temperature { get; init; }
    public DataMode Mode { get; set; }
    public AttentionKind Attention { get; set; }
    public int MaxVocab { get; init; }
    public int MinCount { get; init; }
    public float Dropout { get; set; }
    public ScheduleKind ScheduleKind { get; init; }
    public double? LrDecay { get; init; }
    public long LrDecayAfter { get; init; }
    public long? LrDecayEvery { get; init; }
    public double LrMin { get; init; }
    public long? CosineSteps { get; init; }
    public int PlateauPatience { get; init; }
    public bool KeepBest { get; init; }
    public int EarlyStop { get; init; }
    public bool Bidirectional { get; set; }
    public required Func<string, bool> Given { get; init; }
    /// <summary>Stops the run after the current step (with a resumable checkpoint); one that cannot be cancelled means "listen for SIGINT/SIGTERM".</summary>
    public CancellationToken Stop { get; init; }

    private DeviceInfo target = null!;

    public int Execute(TextWriter stdout)
    {
        Checkpoint? start = Resume is not null ? Checkpoint.Load(Resume) : Init is not null ? Checkpoint.Load(Init) : null;
        if (start is not null)
            AdoptCheckpoint(start);
        if (Resume is not null && !Given("--out"))
            Out = Resume; // a resumed run continues in its own file
        Validate();
        using var outLock = OutputLock.Acquire(Out);
        using var signals = Stop.CanBeCanceled ? null : new StopSignals(Out);
        var stop = signals?.Token ?? Stop;

        string text = DataPath is not null ? TextFile.Read(DataPath) : DefaultCorpus.Text;
        string dataName = DataPath ?? DefaultCorpus.Name;
        var dataIdentity = DataIdentity.Of(dataName, text);
        if (Resume is not null && start!.Data is { } trained && !trained.SameContents(dataIdentity) && !AllowOtherData)
            throw new GpuRnnException($"{Resume} was trained on {trained}, but --data is {dataIdentity}; give the same data, or --allow-other-data to continue on this one");
        ModelConfig config = null!;
        var set = TrainingSet.Build(Mode, text, dataName, start, Tokenizer, MaxVocab, MinCount, ValFraction, Batch, SeqLen, Seed, (vocabulary, labels, longest, longestSource) =>
        {
            config = start is not null ? start.Config with { Dropout = Dropout } : new ModelConfig(vocabulary.Count, Hidden, Layers, labels?.Length ?? 0, Mode == DataMode.Pairs, Cell, Dropout, Bidirectional, Attention);
            TrainingMemory.EnsureFits(TrainingMemory.Bytes(config, Batch, longest, Optimizer.SlotNames.Count, ValFraction > 0, longestSource), target,
                $"L={config.Layers} H={config.Hidden} V={config.Vocab} B={Batch} T={longest}");
            TrainingMemory.EnsureIndexable(config, Batch, Math.Max(longest, longestSource));
        });
        var vocab = set.Vocabulary;
        var batcher = set.Train;
        long total = Steps > 0 ? Steps : (long)Epochs * batcher.StepsPerEpoch;
        if (start?.Training is { } done && Resume is not null && done.Step >= total)
            throw new GpuRnnException($"{Resume} is at step {done.Step}, which already reaches the {total} steps asked for; give a larger --steps or --epochs");

        using var gpu = GpuDevice.Open(Device);
        using var model = start is not null ? start.CreateModel(gpu, Dropout) : new RnnModel(gpu, config, Seed);
        model.Recurrence = Recurrence;
        using var trainer = new Trainer(model, Optimizer) { DropoutSeed = Seed };
        double best = double.NaN;
        int reductions = 0, sinceBest = 0;
        var schedule = Resume is not null ? start!.Training!.Schedule ?? LearningRateSchedule.Constant : Schedule(total, batcher.StepsPerEpoch);
        if (Resume is not null)
        {
            start!.RestoreTrainer(trainer, model);
            batcher.Seek(start.Training!.Epoch, start.Training.Position);
            best = start.Training.BestValidationLoss;
            (reductions, sinceBest) = (start.Training.Reductions, start.Training.EvaluationsSinceBest);
        }
        var history = Resume is not null ? start!.History ?? new TrainingHistory() : new TrainingHistory(); // a resumed run's plot covers the whole run
        string bestPath = BestPath(Out);
        var report = new Reporter(stdout, Json, LogPath, total, Batch * (Mode == DataMode.Stream ? SeqLen : set.Longest), history);
        report.Scheduled = schedule.Kind != ScheduleKind.Constant;
        report.Start($"device {gpu.Info}; {Checkpoint.ModeName(Mode)} data {dataName}: {set.Description}, V={vocab.Count}; " +
            $"{Checkpoint.CellName(model.Config.Cell)} L={model.Config.Layers} H={model.Config.Hidden} B={Batch} T={SeqLen}" + (model.Config.Dropout > 0 ? $" dropout={model.Config.Dropout}" : "") +
            (model.Config.Bidirectional ? " bidirectional" : "") + (model.Config.Attention != AttentionKind.None ? $" attention={AttentionNames.Name(model.Config.Attention)}" : "") +
            $", {Checkpoint.OptimizerName(Optimizer.Kind)} lr={Optimizer.LearningRate}" + (schedule.Kind != ScheduleKind.Constant ? $" ({LearningRateSchedule.Name(schedule.Kind)} schedule)" : "") + $"; {total} steps" +
            (Resume is not null ? $", resuming at step {trainer.StepCount}" : ""));

        TrainingState State() => new(trainer.StepCount, batcher.Epoch, batcher.Position, Batch, SeqLen, ValFraction, Optimizer, Seed, best,
            schedule.Kind == ScheduleKind.Constant ? null : schedule, reductions, sinceBest);
        void Save() => report.Untimed(() => Checkpoint.Save(Out, model, vocab, Tokenizer, trainer, State(), Mode, set.Labels, dataIdentity, report.History));
        ClassifierMetrics? metrics = null;
        PairMetrics? pairMetrics = null;
        long evaluatedAt = -1;
        double? lastVal = null;
        // An evaluation: a new best resets the count of evaluations without one (and, with --keep-best, is saved);
        // otherwise the count grows, and the plateau schedule reduces the rate and --early-stop stops on it.
        double? Evaluate()
        {
            if (evaluatedAt == trainer.StepCount)
                return lastVal; // the end of a run whose last step was just evaluated
            var v = report.Untimed(() => set.Validate(trainer.Inference));
            if (v is null)
                return null;
            (evaluatedAt, lastVal) = (trainer.StepCount, v.Loss);
            report.Validated(trainer.StepCount, v);
            metrics = v.Metrics;
            pairMetrics = v.Pairs;
            if (double.IsNaN(best) || v.Loss < best)
            {
                (best, sinceBest) = (v.Loss, 0);
                if (KeepBest)
                    report.Untimed(() => Checkpoint.Save(bestPath, model, vocab, Tokenizer, mode: Mode, labels: set.Labels, data: dataIdentity));
                return v.Loss;
            }
            sinceBest++;
            if (schedule.ReducesAfter(sinceBest))
                reductions++;
            EarlyStopped = EarlyStop > 0 && sinceBest >= EarlyStop;
            return v.Loss;
        }

        long firstStep = trainer.StepCount;
        float Rate(long update) => schedule.Rate(Optimizer.LearningRate, update, reductions);
        double smoothed = report.Run(() => Loop(trainer, model.Config.Outputs, batcher, total, report, Evaluate, Save, Rate, stop));
        if (trainer.StepCount < total && !EarlyStopped)
            return Interrupted(stdout, report, trainer.StepCount, total, trainer.StepCount > firstStep ? Save : null);
        // The end-of-run validation (Evaluate returns the last result when the schedule just ran one at this step).
        double? finalVal = Evaluate();
        Save();
        if (EarlyStopped)
        {
            stdout.WriteLine(Json
                ? System.Text.Json.JsonSerializer.Serialize(new { @event = "early_stop", step = trainer.StepCount, best_val_loss = best })
                : FormattableString.Invariant($"early stop at step {trainer.StepCount} of {total}: {sinceBest} evaluations without a new best validation loss (best {best:F4}); kept {Out}") +
                  (KeepBest ? $" and the best model {bestPath}" : ""));
        }
        // Positions processed per step: B·T of a stream window, B·(longest line) of a padded batch at most; per second of training only.
        double tokensPerSecond = report.TokensPerSecond;
        string plot = Path.ChangeExtension(Out, ".loss.png");
        LossPlot.Save(plot, report.History, config.IsClassifier);
        double seconds = report.WallSeconds;
        report.Finish();

        string sample = "";
        if (SampleLength > 0 && !config.IsClassifier && !config.EncoderDecoder)
        {
            using var generator = new Generator(model);
            var sampling = new SamplingOptions(Temperature, Seed: Seed);
            sample = Mode == DataMode.Lines
                ? string.Join("\n", Enumerable.Range(0, 8).Select(i => generator.Sample(vocab, Tokenizer, "", SampleLength, sampling with { Seed = Seed + i }, Mode)))
                : generator.Sample(vocab, Tokenizer, "", SampleLength, sampling);
        }
        var summary = new Dictionary<string, object?>
        {
            ["checkpoint"] = Out,
            ["plot"] = plot,
            ["steps"] = trainer.StepCount,
            ["train_loss_smoothed"] = smoothed,
            ["val_loss"] = finalVal,
            ["best_val_loss"] = double.IsNaN(best) ? null : best,
            ["best_checkpoint"] = KeepBest && File.Exists(bestPath) ? bestPath : null,
            ["lr"] = trainer.LearningRate,
            ["perplexity"] = config.IsClassifier ? null : Math.Exp(finalVal ?? smoothed), // per target token for an encoder–decoder
            ["seconds"] = seconds,
            ["tokens_per_s"] = tokensPerSecond,
            ["device"] = gpu.Info.ToString(),
        };
        if (metrics is not null)
        {
            summary["val_accuracy"] = metrics.Accuracy;
            summary["train_accuracy"] = report.History.Evaluations[^1].TrainAccuracy;
            for (int c = 0; c < metrics.Classes.Count; c++)
                summary[$"val_f1_{metrics.Classes[c]}"] = metrics.F1(c);
            sample = metrics.Report();
        }
        if (pairMetrics is not null)
        {
            summary["val_exact_match"] = pairMetrics.ExactMatch;
            summary["val_token_accuracy"] = pairMetrics.TokenAccuracy;
            sample = pairMetrics.Report();
        }
        report.Summary(summary, sample, metrics is not null || pairMetrics is not null ? "validation:" : FormattableString.Invariant($"sample (temperature {Temperature}):"));
        return ExitCodes.Ok;
    }

    /// <summary>The steps: train, guard against divergence, validate and save on schedule. Returns the smoothed training loss.</summary>
    /// <remarks>
    /// A non-finite loss or gradient norm, or a loss above <see cref="DivergenceCeiling"/>, stops the run before the update reaches the weights. A
    /// cancelled <paramref name="stop"/> ends the loop after the current step, before <paramref name="total"/>.
    /// </remarks>
    private double Loop(Trainer trainer, int outputs, ITrainingData batcher, long total, Reporter report,
        Func<double?> validate, Action save, Func<long, float> rate, CancellationToken stop)
    {
        double smoothed = double.NaN;
        float ceiling = float.NaN; // set by the run's first step: see DivergenceCeiling
        while (trainer.StepCount < total && !stop.IsCancellationRequested && !EarlyStopped)
        {
            var window = batcher.Next();
            trainer.ComputeGradients(window); // ComputeGradients + ApplyUpdate = Trainer.Step, with a check before the update
            var (loss, gradNorm) = trainer.ReadLossAndNorm();
            long step = trainer.StepCount + 1;
            if (float.IsNaN(ceiling) && float.IsFinite(loss))
                ceiling = DivergenceCeiling(loss, outputs);
            if (!float.IsFinite(loss) || !float.IsFinite(gradNorm) || loss > ceiling)
            {
                report.Finish();
                string kept = File.Exists(Out) ? $"the last good checkpoint {Out} was kept" : "no checkpoint had been written yet";
                string what = !float.IsFinite(loss) ? FormattableString.Invariant($"the loss is {loss}")
                    : !float.IsFinite(gradNorm) ? FormattableString.Invariant($"the gradient norm is {gradNorm} (loss {loss})")
                    : FormattableString.Invariant($"the loss {loss:G4} is above {ceiling:G4}, 10 × the larger of this run's first loss and ln(outputs)");
                throw new DivergedException($"training diverged at step {step}: {what}; {kept}. Try a lower --lr or --clip-norm 5");
            }
            trainer.LearningRate = report.LearningRate = rate(step);
            trainer.ApplyUpdate();
            smoothed = double.IsNaN(smoothed) ? loss : 0.98 * smoothed + 0.02 * loss;
            if (EvalEvery > 0 && step % EvalEvery == 0)
                validate();
            report.Step(step, loss, smoothed);
            if (CheckpointEvery > 0 && step % CheckpointEvery == 0)
                save();
        }
        return smoothed;
    }

    /// <summary>
    /// The loss above which a run counts as diverged: 10 × max(first loss of this run, ln C), C the output classes
    /// (V for a language model). A cross-entropy starts near ln C and falls; ten times that means the model puts
    /// a probability below e^(−10·ln C) = C^−10 on the targets on average, which a learning run never does.
    /// </summary>
    internal static float DivergenceCeiling(float firstLoss, int outputs) => 10f * MathF.Max(firstLoss, MathF.Log(Math.Max(outputs, 2)));

    /// <summary>Takes the sizes (and, for --resume, the run's settings) from the checkpoint; a conflicting flag is an error.</summary>
    private void AdoptCheckpoint(Checkpoint c)
    {
        void Same<T>(string flag, T mine, T theirs, Action<T> set)
        {
            if (Given(flag) && !EqualityComparer<T>.Default.Equals(mine, theirs))
                throw new GpuRnnException($"{flag} {mine} conflicts with {c.Source}, which has {theirs}");
            set(theirs);
        }
        Same("--cell", Checkpoint.CellName(Cell), Checkpoint.CellName(c.Config.Cell), v => Cell = Checkpoint.ParseCell(v));
        Same("--hidden", Hidden, c.Config.Hidden, v => Hidden = v);
        Same("--layers", Layers, c.Config.Layers, v => Layers = v);
        Same("--tokenizer", Tokenizer, c.Tokenizer, v => Tokenizer = v);
        Same("--mode", Mode, c.Mode, v => Mode = v);
        Same("--bidirectional", Bidirectional, c.Config.Bidirectional, v => Bidirectional = v);
        Same("--attention", AttentionNames.Name(Attention), AttentionNames.Name(c.Config.Attention), v => Attention = AttentionNames.Parse(v));
        if (Resume is null)
            return;
        var t = c.Training ?? throw new GpuRnnException($"{c.Source}: it holds no resume state (only weights); use --init to start from it");
        Same("--batch", Batch, t.Batch, v => Batch = v);
        Same("--seq-len", SeqLen, t.SeqLen, v => SeqLen = v);
        Same("--val-fraction", ValFraction, t.ValFraction, v => ValFraction = v);
        Same("--seed", Seed, t.Seed, v => Seed = v);
        Same("--optimizer", Optimizer.Kind, t.Optimizer.Kind, _ => { });
        Same("--lr", Optimizer.LearningRate, t.Optimizer.LearningRate, _ => { });
        Same("--momentum", Optimizer.Momentum, t.Optimizer.Momentum, _ => { });
        Same("--clip-norm", Optimizer.ClipNorm, t.Optimizer.ClipNorm, _ => { });
        Same("--clip-value", Optimizer.ClipValue, t.Optimizer.ClipValue, _ => { });
        Optimizer = t.Optimizer;
        Same("--dropout", Dropout, c.Config.Dropout, v => Dropout = v);
        var schedule = t.Schedule ?? LearningRateSchedule.Constant;
        Same("--lr-schedule", LearningRateSchedule.Name(ScheduleKind), LearningRateSchedule.Name(schedule.Kind), _ => { });
        foreach (string flag in new[] { "--lr-decay", "--lr-decay-after", "--lr-decay-every", "--lr-min", "--cosine-steps", "--plateau-patience" })
        {
            if (Given(flag))
                throw new GpuRnnException($"{flag} conflicts with --resume: the run continues {c.Source}'s {LearningRateSchedule.Name(schedule.Kind)} schedule as saved");
        }
    }

    private void Validate()
    {
        if (Attention != AttentionKind.None && Mode != DataMode.Pairs)
            throw new GpuRnnException($"--attention {AttentionNames.Name(Attention)}: attention reads an encoder's outputs; it needs --mode pairs, not {Checkpoint.ModeName(Mode)}");
        if (Directory.Exists(Out))
            throw new GpuRnnException($"--out {Out}: is a folder; give the checkpoint file to write, e.g. {Path.Combine(Out, "model.safetensors")}");
        if (DataPath is not null && SamePath(Out, DataPath))
            throw new GpuRnnException($"--out {Out}: is the training data (--data); give another checkpoint file");
        if (File.Exists(Out) && !(Resume is not null && SamePath(Out, Resume)) && !Checkpoint.IsCheckpointFile(Out))
            throw new GpuRnnException($"--out {Out}: exists and is not a GpuRnn checkpoint; refusing to overwrite it (give another --out or remove the file)");
        if (Bidirectional && Mode is not (DataMode.Labeled or DataMode.Pairs))
            throw new GpuRnnException($"--bidirectional needs --mode labeled or pairs: a language model (--mode {Checkpoint.ModeName(Mode)}) read backwards would see the tokens it predicts");
        TrainCommand.RequirePositive(Hidden, "--hidden");
        TrainCommand.RequirePositive(Layers, "--layers");
        TrainCommand.RequirePositive(Batch, "--batch");
        TrainCommand.RequirePositive(SeqLen, "--seq-len");
        if (Steps < 0)
            throw new GpuRnnException($"--steps must be 0 (use --epochs) or positive (got {Steps})");
        TrainCommand.RequirePositive(Epochs, "--epochs");
        if (!(ValFraction >= 0 && ValFraction < 1))
            throw new GpuRnnException($"--val-fraction must be in [0, 1) (got {ValFraction})");
        if (EvalEvery < 0)
            throw new GpuRnnException($"--eval-every must be 0 or positive (got {EvalEvery})");
        if (CheckpointEvery < 0)
            throw new GpuRnnException($"--checkpoint-every must be 0 or positive (got {CheckpointEvery})");
        if (SampleLength < 0)
            throw new GpuRnnException($"--length must be 0 or positive (got {SampleLength})");
        new SamplingOptions(Temperature).Validate();
        Optimizer.Validate();
        if (!(Dropout >= 0f && Dropout < 1f))
            throw new GpuRnnException($"--dropout must be in [0, 1) (got {Dropout})");
        if (EarlyStop < 0)
            throw new GpuRnnException($"--early-stop must be 0 (never) or positive (got {EarlyStop})");
        string needsValidation = KeepBest ? "--keep-best" : EarlyStop > 0 ? "--early-stop" : ScheduleKind == ScheduleKind.Plateau ? "--lr-schedule plateau" : "";
        if (needsValidation.Length > 0 && ValFraction == 0)
            throw new GpuRnnException($"{needsValidation} needs validation loss: give --val-fraction above 0");
        string best = BestPath(Out);
        if (KeepBest && File.Exists(best) && !Checkpoint.IsCheckpointFile(best))
            throw new GpuRnnException($"--keep-best: {best} exists and is not a GpuRnn checkpoint; refusing to overwrite it");
        target = GpuDevice.Resolve(Device); // a bad or absent device is reported before any data is read
    }

    /// <summary>Where --keep-best writes: <c>NAME.best.safetensors</c> beside <c>NAME.safetensors</c>.</summary>
    internal static string BestPath(string output) => Path.ChangeExtension(output, ".best.safetensors");

    /// <summary>True once --early-stop has seen enough evaluations without a new best.</summary>
    private bool EarlyStopped { get; set; }

    /// <summary>The schedule of a new run from the flags: the step schedule decays every epoch unless told, cosine spans the run's <paramref name="total"/> steps unless told.</summary>
    private LearningRateSchedule Schedule(long total, long stepsPerEpoch)
    {
        var s = new LearningRateSchedule(ScheduleKind, LrDecay ?? (ScheduleKind == ScheduleKind.Plateau ? 0.5 : 0.97), LrDecayAfter,
            LrDecayEvery ?? Math.Max(1, stepsPerEpoch), LrMin, PlateauPatience, ScheduleKind == ScheduleKind.Cosine ? CosineSteps ?? Math.Max(1, total) : 1);
        s.Validate();
        return s;
    }

    private static bool SamePath(string a, string b) => string.Equals(Path.GetFullPath(a), Path.GetFullPath(b), StringComparison.Ordinal);

    /// <summary>
    /// The end of a run stopped by SIGINT/SIGTERM (or the stop token): save the full resume state
    /// when this run took a step (never overwrite --out with an untouched model), say where, exit 130.
    /// </summary>
    private int Interrupted(TextWriter stdout, Reporter report, long step, long total, Action? save)
    {
        save?.Invoke();
        report.Finish();
        string message = save is not null
            ? $"interrupted after step {step}: saved the full resume state to {Out}; continue with: gpurnn train --resume {Out}" + (DataPath is not null ? $" --data {DataPath}" : "") + $" --steps {total}" + (Given("--eval-every") ? $" --eval-every {EvalEvery}" : "")
            : $"interrupted before the first step of this run; {Out} was not touched";
        stdout.WriteLine(Json ? System.Text.Json.JsonSerializer.Serialize(new { @event = "interrupted", step, checkpoint = save is not null ? Out : null, message }) : message);
        return ExitCodes.Interrupted;
    }
}

/// <summary>Training stopped because the loss became NaN or infinite.</summary>
internal sealed class DivergedException(string message) : Exception(message);
