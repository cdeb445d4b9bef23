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
}
