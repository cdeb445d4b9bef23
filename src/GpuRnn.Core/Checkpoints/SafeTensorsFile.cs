using System.Buffers.Binary;
using System.Collections.ObjectModel;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Unicode;

namespace GpuRnn.Checkpoints;

/// <summary>One named F32 tensor of a safetensors file.</summary>
/// <param name="Name">The tensor's key in the header (e.g. <c>rnn.weight_ih_l0</c>).</param>
/// <param name="Shape">Dimensions, outermost first; <c>[]</c> is a scalar.</param>
/// <param name="Data">The elements in row-major order; its length is the product of <paramref name="Shape"/>.</param>
public sealed record TensorEntry(string Name, int[] Shape, float[] Data);

/// <summary>
/// A safetensors file (DESIGN.md §7, https://huggingface.co/docs/safetensors) of F32 tensors and
/// string metadata: an 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the raw
/// little-endian data. <see cref="Read(Stream, string)"/> is strict: it checks the whole header
/// against the file's size before it allocates anything sized by the header, so a corrupt or
/// hostile file costs at most its own size and always ends in a <see cref="GpuRnnException"/>.
/// <see cref="Write(string)"/> replaces the target atomically.
/// </summary>
public sealed class SafeTensorsFile
{
    /// <summary>The key of the free-form string → string map in the header.</summary>
    public const string MetadataKey = "__metadata__";

    /// <summary>
    /// Largest header accepted. The Rust library's limit is the same 100 MB; a real header is a few
    /// kilobytes, so anything larger is corruption and must not drive an allocation.
    /// </summary>
    public const long MaxHeaderBytes = 100_000_000;

    // Our header is at most 3 levels deep (root, entry, array); a small limit makes deeply nested
    // garbage fail fast instead of recursing through the reader.
    private const int MaxJsonDepth = 8;

    // Header and data section are both aligned to this (the Python writer pads with spaces).
    private const int HeaderAlignment = 8;

    private const string DtypeF32 = "F32";

    // Strict UTF-8 (throws on lone surrogates) so that what we write reads back identically.
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly TensorEntry[] tensors;
    private readonly Dictionary<string, TensorEntry> byName;

    /// <summary>Creates a file's contents from tensors (written in this order) and metadata.</summary>
    /// <param name="tensors">The tensors; names unique, not <see cref="MetadataKey"/>, data length = shape product.</param>
    /// <param name="metadata">String → string metadata; written with keys sorted (ordinal) for reproducible files.</param>
    /// <exception cref="ArgumentException">A tensor or metadata entry is malformed (a programming error).</exception>
    public SafeTensorsFile(IReadOnlyList<TensorEntry> tensors, IReadOnlyDictionary<string, string> metadata)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(metadata);
        this.tensors = tensors.ToArray();
        byName = new Dictionary<string, TensorEntry>(this.tensors.Length, StringComparer.Ordinal);
        foreach (TensorEntry? t in this.tensors)
        {
            ArgumentNullException.ThrowIfNull(t, nameof(tensors));
            ArgumentNullException.ThrowIfNull(t.Name, nameof(tensors));
            ArgumentNullException.ThrowIfNull(t.Shape, nameof(tensors));
            ArgumentNullException.ThrowIfNull(t.Data, nameof(tensors));
            if (t.Name == MetadataKey)
                throw new ArgumentException($"tensor name {MetadataKey} is reserved for the metadata", nameof(tensors));
            RequireWellFormed(t.Name, nameof(tensors));
            if (!byName.TryAdd(t.Name, t))
                throw new ArgumentException($"tensor {Quote(t.Name)} appears twice", nameof(tensors));
            string? problem = ShapeMismatch(t);
            if (problem != null)
                throw new ArgumentException(problem, nameof(tensors));
        }

        var sorted = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var (key, value) in metadata)
        {
            ArgumentNullException.ThrowIfNull(value, nameof(metadata));
            RequireWellFormed(key, nameof(metadata));
            RequireWellFormed(value, nameof(metadata));
            sorted.Add(key, value);
        }
        Metadata = new ReadOnlyDictionary<string, string>(sorted);
    }

    /// <summary>The tensors in data-offset order (for a file built in code: the order given, which is the write order).</summary>
    public IReadOnlyList<TensorEntry> Tensors => tensors;

    /// <summary>The header's <c>__metadata__</c> map (empty when absent), keys in ordinal order.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>The tensor with this exact (ordinal) name, or null.</summary>
    public TensorEntry? Find(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return byName.GetValueOrDefault(name);
    }

    // ------------------------------------------------------------------------------------ reading

    /// <summary>Reads and validates a safetensors file.</summary>
    /// <exception cref="GpuRnnException">The file cannot be read or is malformed; the message starts with <paramref name="path"/>.</exception>
    public static SafeTensorsFile Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 16);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new GpuRnnException($"{path}: no such file", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new GpuRnnException($"{path}: cannot open: {OneLine(e.Message)}", e);
        }
        using (stream)
            return Read(stream, path);
    }

    /// <summary>
    /// Reads and validates a safetensors file from the stream's current position to its end.
    /// A stream that cannot seek is first copied into memory (its size must be known before the
    /// header is trusted).
    /// </summary>
    /// <param name="stream">The file's bytes.</param>
    /// <param name="displayName">Names the file in error messages (usually its path).</param>
    /// <exception cref="GpuRnnException">The contents are malformed or the stream fails; the message starts with <paramref name="displayName"/>.</exception>
    public static SafeTensorsFile Read(Stream stream, string displayName)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(displayName);
        try
        {
            if (!stream.CanSeek)
            {
                // Copying grows with the bytes actually present, never with what a header claims.
                var copy = new MemoryStream();
                stream.CopyTo(copy);
                copy.Position = 0;
                stream = copy;
            }
            return ReadSeekable(stream, displayName);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            // EndOfStreamException (an IOException) lands here if the stream shrank under us.
            throw new GpuRnnException($"{displayName}: cannot read: {OneLine(e.Message)}", e);
        }
    }

    private static SafeTensorsFile ReadSeekable(Stream stream, string file)
    {
        long size = stream.Length - stream.Position;
        if (size < 8)
            throw new GpuRnnException($"{file}: file is {size} bytes, too short for the 8-byte header length");

        Span<byte> prefix = stackalloc byte[8];
        stream.ReadExactly(prefix);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        // All three checks come before the header buffer is allocated.
        if (headerLength == 0)
            throw new GpuRnnException($"{file}: header length is 0");
        if (headerLength > MaxHeaderBytes)
            throw new GpuRnnException($"{file}: header length {headerLength} exceeds the limit of {MaxHeaderBytes} bytes");
        if (headerLength > (ulong)(size - 8))
            throw new GpuRnnException($"{file}: header length {headerLength} exceeds the file size {size}");

        var header = new byte[(int)headerLength];
        stream.ReadExactly(header);
        long dataLength = size - 8 - (long)headerLength;

        // header: per tensor, its name, shape and validated [begin, end) in the data section.
        var (entries, metadata) = ParseHeader(header, file, dataLength);

        // Data-offset order; zero-length tensors sort before a tensor starting at the same offset.
        // The sort is stable, so ties keep header order and the result is deterministic.
        var sorted = entries.OrderBy(e => e.Begin).ThenBy(e => e.End).ToArray();
        CheckCoverage(sorted, file, dataLength);

        // Only now allocate: every size below comes from offsets proven to lie inside the file,
        // and the tensors are contiguous from 0, so the data is read front to back.
        var result = new TensorEntry[sorted.Length];
        for (int i = 0; i < sorted.Length; i++)
        {
            HeaderEntry e = sorted[i];
            var data = new float[(e.End - e.Begin) / sizeof(float)];
            stream.ReadExactly(MemoryMarshal.AsBytes(data.AsSpan()));
            if (!BitConverter.IsLittleEndian)
            {
                Span<int> bits = MemoryMarshal.Cast<float, int>(data.AsSpan());
                BinaryPrimitives.ReverseEndianness(bits, bits);
            }
            result[i] = new TensorEntry(e.Name, e.Shape, data);
        }
        return new SafeTensorsFile(result, metadata);
    }

    /// <summary>A tensor as the header describes it, after its own checks.</summary>
    private sealed record HeaderEntry(string Name, int[] Shape, long Begin, long End);

    private static (List<HeaderEntry> Entries, Dictionary<string, string> Metadata) ParseHeader(
        byte[] header, string file, long dataLength)
    {
        if (!Utf8.IsValid(header))
            throw new GpuRnnException($"{file}: header is not valid UTF-8");
        // The Rust library insists on this too; it also rules out a byte-order mark.
        if (header[0] != (byte)'{')
            throw new GpuRnnException($"{file}: header does not start with '{{'");

        var entries = new List<HeaderEntry>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        Dictionary<string, string>? metadata = null;
        try
        {
            var reader = new Utf8JsonReader(header, new JsonReaderOptions
            {
                CommentHandling = JsonCommentHandling.Disallow,
                AllowTrailingCommas = false,
                MaxDepth = MaxJsonDepth,
            });
            Expect(ref reader, JsonTokenType.StartObject, file, "header is not a JSON object");
            while (Next(ref reader) != JsonTokenType.EndObject)
            {
                // JsonDocument would keep the last of two equal keys; a duplicate is ambiguous, so refuse it.
                string key = reader.GetString()!;
                if (key == MetadataKey)
                {
                    if (metadata != null)
                        throw new GpuRnnException($"{file}: header has {MetadataKey} twice");
                    metadata = ParseMetadata(ref reader, file);
                    continue;
                }
                if (!names.Add(key))
                    throw new GpuRnnException($"{file}: header has tensor {Quote(key)} twice");
                entries.Add(ParseEntry(ref reader, key, file, dataLength));
            }
            // Only whitespace (the padding) may follow; the reader throws on anything else.
            if (reader.Read())
                throw new GpuRnnException($"{file}: header has content after its JSON object");
        }
        catch (JsonException e)
        {
            throw new GpuRnnException($"{file}: header is not valid JSON: {OneLine(e.Message)}", e);
        }
        catch (InvalidOperationException e)
        {
            // GetString on an escape that decodes to invalid UTF-16 (e.g. a lone "\ud800").
            throw new GpuRnnException($"{file}: header has an invalid string: {OneLine(e.Message)}", e);
        }
        return (entries, metadata ?? new Dictionary<string, string>());
    }

    private static Dictionary<string, string> ParseMetadata(ref Utf8JsonReader reader, string file)
    {
        Expect(ref reader, JsonTokenType.StartObject, file, $"header {MetadataKey} is not an object");
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        while (Next(ref reader) != JsonTokenType.EndObject)
        {
            string key = reader.GetString()!;
            if (Next(ref reader) != JsonTokenType.String)
                throw new GpuRnnException($"{file}: header {MetadataKey} value for {Quote(key)} is not a string");
            if (!metadata.TryAdd(key, reader.GetString()!))
                throw new GpuRnnException($"{file}: header {MetadataKey} has key {Quote(key)} twice");
        }
        return metadata;
    }

    private static HeaderEntry ParseEntry(ref Utf8JsonReader reader, string name, string file, long dataLength)
    {
        string t = $"tensor {Quote(name)}";
        Expect(ref reader, JsonTokenType.StartObject, file, $"header entry for {t} is not an object");
        string? dtype = null;
        long[]? shape = null;
        long[]? offsets = null;
        while (Next(ref reader) != JsonTokenType.EndObject)
        {
            string field = reader.GetString()!;
            switch (field)
            {
                case "dtype":
                    if (dtype != null)
                        throw new GpuRnnException($"{file}: {t} has 'dtype' twice");
                    if (Next(ref reader) != JsonTokenType.String)
                        throw new GpuRnnException($"{file}: {t} has a 'dtype' that is not a string");
                    dtype = reader.GetString()!;
                    break;
                case "shape":
                    if (shape != null)
                        throw new GpuRnnException($"{file}: {t} has 'shape' twice");
                    shape = ReadIntArray(ref reader, file, $"{t} shape");
                    break;
                case "data_offsets":
                    if (offsets != null)
                        throw new GpuRnnException($"{file}: {t} has 'data_offsets' twice");
                    offsets = ReadIntArray(ref reader, file, $"{t} data_offsets");
                    break;
                default:
                    // An unknown field may change the meaning of the bytes (a stride, an encoding); refuse it.
                    throw new GpuRnnException($"{file}: {t} has an unknown field {Quote(field)}");
            }
        }
        if (dtype == null)
            throw new GpuRnnException($"{file}: {t} has no 'dtype'");
        if (shape == null)
            throw new GpuRnnException($"{file}: {t} has no 'shape'");
        if (offsets == null)
            throw new GpuRnnException($"{file}: {t} has no 'data_offsets'");

        if (dtype != DtypeF32)
            throw new GpuRnnException($"{file}: {t} has dtype {Escape(dtype)}; only F32 is supported");

        if (offsets.Length != 2)
            throw new GpuRnnException($"{file}: {t} data_offsets has {offsets.Length} values, expected [begin, end]");
        long begin = offsets[0], end = offsets[1];
        if (begin > end)
            throw new GpuRnnException($"{file}: {t} data_offsets [{begin},{end}] begin after end");
        if (end > dataLength)
            throw new GpuRnnException(
                $"{file}: {t} data_offsets [{begin},{end}] exceed the data section of {dataLength} bytes");

        // Checked 64-bit product: a hostile shape must overflow into an error, not wrap into a small size.
        long bytes = sizeof(float);
        var dims = new int[shape.Length];
        for (int i = 0; i < shape.Length; i++)
        {
            if (shape[i] > int.MaxValue)
                throw new GpuRnnException($"{file}: {t} shape dimension {shape[i]} is too large");
            dims[i] = (int)shape[i];
            try { bytes = checked(bytes * shape[i]); }
            catch (OverflowException)
            {
                throw new GpuRnnException($"{file}: {t} shape [{string.Join(",", shape)}] overflows 64-bit size");
            }
        }
        if (bytes != end - begin)
            throw new GpuRnnException(
                $"{file}: {t} shape [{string.Join(",", shape)}] needs {bytes} bytes but data_offsets [{begin},{end}] span {end - begin}");
        // A .NET array holds at most Array.MaxLength elements; only a file over 8 GB could get here.
        if (bytes / sizeof(float) > Array.MaxLength)
            throw new GpuRnnException($"{file}: {t} shape [{string.Join(",", shape)}] has more elements than one array can hold");
        return new HeaderEntry(name, dims, begin, end);
    }

    /// <summary>Reads a JSON array of non-negative integers (at most <see cref="long.MaxValue"/>).</summary>
    private static long[] ReadIntArray(ref Utf8JsonReader reader, string file, string what)
    {
        if (Next(ref reader) != JsonTokenType.StartArray)
            throw new GpuRnnException($"{file}: {what} is not an array");
        var values = new List<long>();
        while (Next(ref reader) != JsonTokenType.EndArray)
        {
            // TryGetInt64 fails for fractions, exponents and out-of-range numbers alike.
            if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt64(out long v) || v < 0)
                throw new GpuRnnException($"{file}: {what} must hold non-negative integers");
            values.Add(v);
        }
        return values.ToArray();
    }

    private static void CheckCoverage(HeaderEntry[] sorted, string file, long dataLength)
    {
        // safetensors' own rule: the tensors tile the data section exactly, in offset order.
        long expected = 0;
        for (int i = 0; i < sorted.Length; i++)
        {
            HeaderEntry e = sorted[i];
            if (e.Begin < expected)
                throw new GpuRnnException(
                    $"{file}: tensor {Quote(e.Name)} data_offsets [{e.Begin},{e.End}] overlap tensor {Quote(sorted[i - 1].Name)} (ends at {expected})");
            if (e.Begin > expected)
                throw new GpuRnnException(
                    $"{file}: data bytes [{expected},{e.Begin}) before tensor {Quote(e.Name)} belong to no tensor (a gap in the data_offsets)");
            expected = e.End;
        }
        if (expected != dataLength)
            throw new GpuRnnException(
                $"{file}: data bytes [{expected},{dataLength}) after the last tensor belong to no tensor (data_offsets do not cover the data section)");
    }

    /// <summary>Advances to the next token; the reader throws <see cref="JsonException"/> on malformed JSON.</summary>
    private static JsonTokenType Next(ref Utf8JsonReader reader)
    {
        if (!reader.Read())
            throw new JsonException("unexpected end of the header");
        return reader.TokenType;
    }

    private static void Expect(ref Utf8JsonReader reader, JsonTokenType type, string file, string problem)
    {
        if (Next(ref reader) != type)
            throw new GpuRnnException($"{file}: {problem}");
    }

    // ------------------------------------------------------------------------------------ writing

    /// <summary>
    /// Writes the file atomically (DESIGN.md §7, <see cref="AtomicFile"/>): to a temporary file in the
    /// target's folder (created if missing), flushed to disk, then renamed over the target. On any
    /// failure the temporary file is deleted and an existing target is left as it was.
    /// </summary>
    /// <exception cref="GpuRnnException">The file cannot be written; the message starts with <paramref name="path"/>.</exception>
    /// <exception cref="InvalidOperationException">A tensor's shape or data was changed after construction so that they disagree.</exception>
    public void Write(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        // Serialise the header first: it validates everything, so a bad tensor never creates a file.
        byte[] header = BuildHeader();
        AtomicFile.Write(path, stream => WriteTo(stream, header));
    }

    /// <summary>Serialises the file to the stream (not atomic; the stream's own errors propagate).</summary>
    /// <exception cref="InvalidOperationException">A tensor's shape or data was changed after construction so that they disagree.</exception>
    public void Write(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        WriteTo(stream, BuildHeader());
    }

    private void WriteTo(Stream stream, byte[] header)
    {
        Span<byte> prefix = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
        stream.Write(prefix);
        stream.Write(header);
        foreach (TensorEntry t in tensors)
        {
            if (BitConverter.IsLittleEndian)
            {
                stream.Write(MemoryMarshal.AsBytes(t.Data.AsSpan()));
                continue;
            }
            var buffer = new byte[t.Data.Length * sizeof(float)];
            for (int i = 0; i < t.Data.Length; i++)
                BinaryPrimitives.WriteSingleLittleEndian(buffer.AsSpan(i * sizeof(float)), t.Data[i]);
            stream.Write(buffer);
        }
    }

    /// <summary>The header JSON, padded with spaces to a multiple of 8 bytes as the Python library does.</summary>
    private byte[] BuildHeader()
    {
        var json = new MemoryStream();
        // Relaxed escaping keeps non-ASCII names and metadata readable as UTF-8, as the Rust writer does.
        using (var writer = new Utf8JsonWriter(json, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            writer.WriteStartObject();
            if (Metadata.Count > 0)
            {
                writer.WriteStartObject(MetadataKey);
                foreach (var (key, value) in Metadata) // sorted: reproducible bytes
                    writer.WriteString(key, value);
                writer.WriteEndObject();
            }
            long offset = 0;
            foreach (TensorEntry t in tensors)
            {
                // TensorEntry's arrays are mutable: re-check so the header never lies about the data.
                string? problem = ShapeMismatch(t);
                if (problem != null)
                    throw new InvalidOperationException($"cannot write: {problem} (changed after construction)");
                long bytes = (long)t.Data.Length * sizeof(float);
                writer.WriteStartObject(t.Name);
                writer.WriteString("dtype", DtypeF32);
                writer.WriteStartArray("shape");
                foreach (int d in t.Shape)
                    writer.WriteNumberValue(d);
                writer.WriteEndArray();
                writer.WriteStartArray("data_offsets");
                writer.WriteNumberValue(offset);
                writer.WriteNumberValue(offset + bytes);
                writer.WriteEndArray();
                writer.WriteEndObject();
                offset += bytes;
            }
            writer.WriteEndObject();
        }
        int padding = (int)((HeaderAlignment - json.Length % HeaderAlignment) % HeaderAlignment);
        for (int i = 0; i < padding; i++)
            json.WriteByte((byte)' ');
        return json.ToArray();
    }

    // ------------------------------------------------------------------------------------ helpers

    /// <summary>Null when the tensor's data length equals its shape product, else the problem.</summary>
    private static string? ShapeMismatch(TensorEntry t)
    {
        long count = 1;
        foreach (int d in t.Shape)
        {
            if (d < 0)
                return $"tensor {Quote(t.Name)} has a negative dimension in shape [{string.Join(",", t.Shape)}]";
            // Data.Length <= int.MaxValue, so once the product passes it the shapes cannot match.
            count = Math.Min(count * d, (long)int.MaxValue + 1);
        }
        return count == t.Data.Length
            ? null
            : $"tensor {Quote(t.Name)} has shape [{string.Join(",", t.Shape)}] but {t.Data.Length} values";
    }

    private static void RequireWellFormed(string s, string paramName)
    {
        try { StrictUtf8.GetByteCount(s); }
        catch (EncoderFallbackException)
        {
            throw new ArgumentException($"{Quote(s)} is not well-formed UTF-16 (a lone surrogate)", paramName);
        }
    }

    /// <summary>A name for a one-line message: quoted, control characters escaped, long names cut.</summary>
    private static string Quote(string s) => $"'{Escape(s)}'";

    /// <summary>Text from a file made safe for a one-line message: control characters escaped, long text cut.</summary>
    private static string Escape(string s)
    {
        const int MaxShown = 80;
        var sb = new StringBuilder();
        foreach (char c in s.Length > MaxShown ? s[..MaxShown] : s)
            sb.Append(char.IsControl(c) ? $"\\u{(int)c:x4}" : c.ToString());
        if (s.Length > MaxShown)
            sb.Append("...");
        return sb.ToString();
    }

    private static string OneLine(string message) => message.ReplaceLineEndings(" ");
}
