using NUnit.Framework;

namespace GpuRnn.Tests;

/// <summary>The rate of each update under each schedule, from the definitions in README and <see cref="LearningRateSchedule"/>.</summary>
public sealed class LearningRateScheduleTests
{
    [Test]
    public void ConstantIsTheBaseRateExactly() =>
        Assert.That(Enumerable.Range(1, 50).Select(n => LearningRateSchedule.Constant.Rate(0.002f, n, reductions: 7)), Is.All.EqualTo(0.002f));

    /// <summary>char-rnn's decay: after 10 updates at the base rate, × 0.5 every 4 updates: 11–14 once, 15–18 twice; floored at 0.1.</summary>
    [Test]
    public void StepDecaysEveryNAfterM()
    {
        var s = new LearningRateSchedule(ScheduleKind.Step, Decay: 0.5, DecayAfter: 10, DecayEvery: 4, Min: 0.1);
        Assert.That(s.Rate(1f, 1, 0), Is.EqualTo(1f));
        Assert.That(s.Rate(1f, 10, 0), Is.EqualTo(1f));
        Assert.That(s.Rate(1f, 11, 0), Is.EqualTo(0.5f));
        Assert.That(s.Rate(1f, 14, 0), Is.EqualTo(0.5f));
        Assert.That(s.Rate(1f, 15, 0), Is.EqualTo(0.25f));
        Assert.That(s.Rate(1f, 1000, 0), Is.EqualTo(0.1f), "floored at --lr-min");
    }

    /// <summary>Cosine: the base rate at update 1, the midpoint halfway, the minimum from the horizon on; never rising.</summary>
    [Test]
    public void CosineFallsFromTheBaseToTheMinimumOverTheHorizon()
    {
        var s = new LearningRateSchedule(ScheduleKind.Cosine, Min: 0.2, Horizon: 100);
        Assert.That(s.Rate(1f, 1, 0), Is.EqualTo(1f));
        Assert.That(s.Rate(1f, 51, 0), Is.EqualTo(0.6f).Within(1e-6));
        Assert.That(s.Rate(1f, 101, 0), Is.EqualTo(0.2f).Within(1e-7));
        Assert.That(s.Rate(1f, 500, 0), Is.EqualTo(0.2f).Within(1e-7));
        var rates = Enumerable.Range(1, 120).Select(n => s.Rate(1f, n, 0)).ToList();
        Assert.That(rates.Zip(rates.Skip(1)).All(p => p.Second <= p.First), Is.True, "non-increasing");
    }

    /// <summary>Plateau with patience 2: a reduction at 3, 6, 9 … validations without a new best; the rate is base × decay^reductions.</summary>
    [Test]
    public void PlateauReducesAfterMoreThanPatienceValidations()
    {
        var s = new LearningRateSchedule(ScheduleKind.Plateau, Decay: 0.5, Patience: 2);
        Assert.That(Enumerable.Range(0, 10).Where(s.ReducesAfter), Is.EqualTo(new[] { 3, 6, 9 }));
        Assert.That(s.Rate(1f, 5, reductions: 2), Is.EqualTo(0.25f));
        Assert.That(new LearningRateSchedule(ScheduleKind.Step).ReducesAfter(3), Is.False, "only plateau reduces on validation");
    }

    [Test]
    public void BadValuesNameTheirFlag()
    {
        Assert.That(Assert.Throws<GpuRnnException>(() => new LearningRateSchedule(ScheduleKind.Step, Decay: 0).Validate())!.Message, Does.StartWith("--lr-decay "));
        Assert.That(Assert.Throws<GpuRnnException>(() => new LearningRateSchedule(ScheduleKind.Step, DecayEvery: 0).Validate())!.Message, Does.StartWith("--lr-decay-every"));
        Assert.That(Assert.Throws<GpuRnnException>(() => new LearningRateSchedule(ScheduleKind.Cosine, Min: -1).Validate())!.Message, Does.StartWith("--lr-min"));
        Assert.That(Assert.Throws<GpuRnnException>(() => new LearningRateSchedule(ScheduleKind.Plateau, Patience: -1).Validate())!.Message, Does.StartWith("--plateau-patience"));
    }
}
