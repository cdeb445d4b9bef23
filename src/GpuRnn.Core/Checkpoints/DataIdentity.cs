using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace GpuRnn.Checkpoints;

/// <summary>
/// What a run was trained on, kept in a checkpoint (<c>gpurnn.data</c>) so that a resumed run can refuse other
/// data: the file's name as given, the size and SHA-256 of its UTF-8 text. The name is informational; size and
/// hash decide.
/// </summary>
/// <param name="Name">The data file as named on the command line (or the embedded corpus's name).</param>
/// <param name="Bytes">Size of the text in UTF-8 bytes.</param>
/// <param name="Sha256">SHA-256 of those bytes, lower-case hex.</param>
public sealed record DataIdentity(string Name, long Bytes, string Sha256)
{
    /// <summary>The identity of <paramref name="text"/> read from <paramref name="name"/>.</summary>
    public static DataIdentity Of(string name, string text)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        return new DataIdentity(name, bytes.Length, Convert.ToHexStringLower(SHA256.HashData(bytes)));
    }

    /// <summary>Same contents (size and hash), whatever the names.</summary>
    public bool SameContents(DataIdentity other) => Bytes == other.Bytes && Sha256 == other.Sha256;

    /// <summary>One line for messages: name, size and the hash's first 12 digits.</summary>
    public override string ToString() => $"{Name} ({Bytes:N0} bytes, sha256 {Sha256[..12]}…)";

    internal string ToJson() => JsonSerializer.Serialize(new { name = Name, bytes = Bytes, sha256 = Sha256 });

    internal static DataIdentity Parse(string json, Func<string, GpuRnnException> bad)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            var root = doc.RootElement;
            return new DataIdentity(root.GetProperty("name").GetString() ?? "", root.GetProperty("bytes").GetInt64(), root.GetProperty("sha256").GetString() ?? "");
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw bad($"metadata '{Checkpoint.DataKey}' is malformed (expected {{\"name\", \"bytes\", \"sha256\"}})");
        }
    }
}
