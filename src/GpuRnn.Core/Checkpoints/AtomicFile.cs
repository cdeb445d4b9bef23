namespace GpuRnn.Checkpoints;

/// <summary>
/// Replaces a file atomically (DESIGN.md §7): the bytes go to <c>.&lt;name&gt;.&lt;random&gt;.tmp</c> in the
/// target's folder (created if missing), are flushed to disk, and the temporary file is renamed over the
/// target. On any failure the temporary file is deleted and an existing target is left as it was.
/// Checkpoints and exported ONNX models are written this way.
/// </summary>
internal static class AtomicFile
{
    /// <summary>Writes <paramref name="path"/> with what <paramref name="write"/> puts into the stream.</summary>
    /// <exception cref="GpuRnnException">The file cannot be written; the message starts with <paramref name="path"/>.</exception>
    public static void Write(string path, Action<Stream> write)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(write);
        string full;
        string folder;
        try
        {
            full = Path.GetFullPath(path);
            folder = Path.GetDirectoryName(full) ?? throw new GpuRnnException($"{path}: not a file path");
            Directory.CreateDirectory(folder);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new GpuRnnException($"{path}: cannot create the folder: {OneLine(e.Message)}", e);
        }

        // Same folder, so the final rename stays on one file system and is atomic.
        string temp = Path.Combine(folder, $".{Path.GetFileName(full)}.{Path.GetRandomFileName()}.tmp");
        bool moved = false;
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1 << 16))
            {
                write(stream);
                // Flush(true) forces the bytes to disk; without it a crash after the rename could
                // leave a renamed but empty or partial file.
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
            moved = true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new GpuRnnException($"{path}: cannot write: {OneLine(e.Message)}", e);
        }
        finally
        {
            if (!moved)
                TryDelete(temp);
        }
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Best effort: the original failure is the one worth reporting.
        }
    }

    private static string OneLine(string message) => message.ReplaceLineEndings(" ");
}
