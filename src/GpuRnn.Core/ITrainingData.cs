namespace GpuRnn;

/// <summary>A source of training windows that can say where it is and go back there (for resuming).</summary>
public interface ITrainingData
{
    /// <summary>Windows (optimizer steps) in one epoch.</summary>
    int StepsPerEpoch { get; }

    /// <summary>Completed epochs.</summary>
    int Epoch { get; }

    /// <summary>Where the next window starts within the epoch.</summary>
    int Position { get; }

    /// <summary>Moves to a saved position.</summary>
    void Seek(int epoch, int position);

    /// <summary>The next window (the same object every call, refilled).</summary>
    TokenWindow Next();
}
