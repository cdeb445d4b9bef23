using System.Runtime.InteropServices;

namespace GpuRnn.Cli;

/// <summary>
/// Ctrl-C (SIGINT) and SIGTERM during <c>train</c>: the first asks the run to stop after the current
/// step (it then writes a resumable checkpoint and exits with <see cref="ExitCodes.Interrupted"/>);
/// a second one exits at once with the same code. Checkpoints are written to a temporary file and
/// renamed, so exiting at once never damages the last complete one.
/// </summary>
internal sealed class StopSignals : IDisposable
{
    private readonly CancellationTokenSource source = new();
    private readonly PosixSignalRegistration[] registrations;
    private readonly string checkpoint;
    private int signals;

    public StopSignals(string checkpoint)
    {
        this.checkpoint = checkpoint;
        registrations = [PosixSignalRegistration.Create(PosixSignal.SIGINT, Handle), PosixSignalRegistration.Create(PosixSignal.SIGTERM, Handle)];
    }

    /// <summary>Cancelled by the first signal.</summary>
    public CancellationToken Token => source.Token;

    private void Handle(PosixSignalContext context)
    {
        context.Cancel = true; // no default termination: the run stops at the next step boundary
        if (Interlocked.Increment(ref signals) == 1)
        {
            Console.Error.WriteLine($"gpurnn: {context.Signal}: stopping after the current step and saving {checkpoint} (again to quit at once)");
            source.Cancel();
            return;
        }
        Console.Error.WriteLine($"gpurnn: {context.Signal} again: quitting at once; {checkpoint} is as it was after the last complete save");
        Environment.Exit(ExitCodes.Interrupted);
    }

    public void Dispose()
    {
        for (int i = registrations.Length - 1; i >= 0; i--)
            registrations[i].Dispose();
        source.Dispose();
    }
}
