namespace GpuRnn;

/// <summary>
/// A problem the user can fix (a bad flag, a missing device, a malformed file). Its message is one
/// line that names the culprit; front ends print it as it is, without a stack trace.
/// </summary>
public sealed class GpuRnnException : Exception
{
    /// <summary>Creates the exception with its one-line message.</summary>
    public GpuRnnException(string message) : base(message) { }

    /// <summary>Creates the exception with its one-line message and the lower-level cause.</summary>
    public GpuRnnException(string message, Exception inner) : base(message, inner) { }

    /// <summary>
    /// A setting out of range: the message is "<paramref name="parameter"/> <paramref name="problem"/>", in the library's
    /// names (<c>LearningRate must be …</c>); a front end may name the setting its own way (the runner: <c>--lr must be …</c>).
    /// </summary>
    public GpuRnnException(string parameter, string problem) : base($"{parameter} {problem}")
    {
        Parameter = parameter;
        Problem = problem;
    }

    /// <summary>The setting at fault as the library names it (a property or argument), or null when the message names no setting.</summary>
    public string? Parameter { get; }

    /// <summary>What is wrong with <see cref="Parameter"/> (the message without the name), or null.</summary>
    public string? Problem { get; }
}
