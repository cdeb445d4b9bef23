using System.Diagnostics;
using System.Globalization;

namespace GpuRnn.Cli;

/// <summary>
/// <c>&lt;out&gt;.lock</c> beside a checkpoint that a <c>train</c> run is writing, so that a second run
/// with the same <c>--out</c> is refused instead of the two overwriting each other's checkpoints. The
/// file holds the owner's process id and stays open with a shared OS lock while the run lasts;
/// it is deleted on dispose. A lock left behind by a run that died (no process holds the OS lock
/// and its process id is gone) is taken over.
/// </summary>
public sealed class OutputLock : IDisposable
{
    private readonly FileStream stream;

    private OutputLock(FileStream stream, string path)
    {
        this.stream = stream;
        Path = path;
    }

    /// <summary>The lock file.</summary>
    public string Path { get; }

    /// <summary>Takes the lock of checkpoint <paramref name="checkpoint"/>, creating its folder if missing.</summary>
    /// <exception cref="GpuRnnException">Another live run holds it, or the folder cannot be written.</exception>
    public static OutputLock Acquire(string checkpoint)
    {
        string path = System.IO.Path.GetFullPath(checkpoint) + ".lock";
        try
        {
            Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new GpuRnnException($"--out {checkpoint}: cannot create the folder: {e.Message.ReplaceLineEndings(" ")}", e);
        }
        for (int attempt = 0; attempt < 3; attempt++)
        {
            try
            {
                // CreateNew is atomic: of two runs racing here exactly one creates the file.
                // FileShare.Read lets others read the process id but not take the file exclusively.
                var stream = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.Read, 4096, FileOptions.DeleteOnClose);
                var text = System.Text.Encoding.ASCII.GetBytes(Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\n");
                stream.Write(text);
                stream.Flush(flushToDisk: true);
                return new OutputLock(stream, path);
            }
            catch (IOException) when (File.Exists(path))
            {
                if (!IsStale(path, out int? owner))
                {
                    string who = owner is { } pid ? $"PID {pid}" : "another process";
                    throw new GpuRnnException($"--out {checkpoint} is being written by another gpurnn train ({who}; lock file {path}); wait for it to finish or choose another --out");
                }
                TryDelete(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new GpuRnnException($"--out {checkpoint}: cannot create the lock file {path}: {e.Message.ReplaceLineEndings(" ")}", e);
            }
        }
        throw new GpuRnnException($"--out {checkpoint}: could not take the lock file {path}; another run keeps recreating it");
    }

    /// <summary>
    /// A lock file is stale when nobody holds it open (an exclusive open succeeds) and the process id
    /// it names is not a running process other than this one.
    /// </summary>
    private static bool IsStale(string path, out int? owner)
    {
        owner = null;
        try
        {
            using var probe = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.None);
            using var reader = new StreamReader(probe);
            if (int.TryParse(reader.ReadLine(), NumberStyles.None, CultureInfo.InvariantCulture, out int pid))
                owner = pid;
        }
        catch (FileNotFoundException)
        {
            return true; // released in the meantime
        }
        catch (IOException)
        {
            owner = ReadOwner(path);
            return false; // held open by a live run
        }
        // Where the OS does not lock files (DOTNET_SYSTEM_IO_DISABLEFILELOCKING, some network file
        // systems) the process id decides.
        return owner is not { } id || id == Environment.ProcessId || !IsRunning(id);
    }

    private static int? ReadOwner(string path)
    {
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            using var reader = new StreamReader(stream);
            return int.TryParse(reader.ReadLine(), NumberStyles.None, CultureInfo.InvariantCulture, out int pid) ? pid : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static bool IsRunning(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            return false;
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The next CreateNew attempt reports it.
        }
    }

    /// <summary>Releases and deletes the lock file.</summary>
    public void Dispose() => stream.Dispose();
}
