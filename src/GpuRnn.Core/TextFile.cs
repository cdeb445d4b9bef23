using System.Buffers;
using System.Text;

namespace GpuRnn;

/// <summary>Reads a UTF-8 text data file strictly, with one-line errors that name the file.</summary>
public static class TextFile
{
    /// <summary>
    /// The text of <paramref name="path"/>: a UTF-8 byte-order mark is dropped and CRLF line endings
    /// become LF. Missing files, folders, empty files, binary files (a NUL byte) and invalid UTF-8
    /// (with its byte offset) are errors.
    /// </summary>
    /// <exception cref="GpuRnnException">The file cannot be used as text.</exception>
    public static string Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (Directory.Exists(path))
            throw new GpuRnnException($"{path}: is a folder, not a text file");
        if (!File.Exists(path))
            throw new GpuRnnException($"{path}: no such file");
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new GpuRnnException($"{path}: cannot read: {e.Message.Split('\n')[0]}", e);
        }
        return Decode(bytes, path);
    }

    /// <summary>The checks of <see cref="Read"/> on bytes already in memory; <paramref name="name"/> is used in messages.</summary>
    public static string Decode(ReadOnlySpan<byte> bytes, string name)
    {
        if (bytes.StartsWith("\uFEFF"u8))
            bytes = bytes[3..];
        if (bytes.IsEmpty)
            throw new GpuRnnException($"{name}: the file is empty");
        int nul = bytes.IndexOf((byte)0);
        if (nul >= 0)
            throw new GpuRnnException($"{name}: looks like a binary file (NUL byte at offset {nul}); expected UTF-8 text");
        int offset = 0;
        while (offset < bytes.Length)
        {
            var status = Rune.DecodeFromUtf8(bytes[offset..], out _, out int consumed);
            if (status != OperationStatus.Done)
                throw new GpuRnnException($"{name}: invalid UTF-8 at byte offset {offset}");
            offset += consumed;
        }
        return Encoding.UTF8.GetString(bytes).Replace("\r\n", "\n", StringComparison.Ordinal);
    }
}
