using System.IO.Compression;
using System.Text;

namespace GpuRnn;

/// <summary>
/// The corpus GpuRnn ships so that it trains anywhere with no data file: Tiny Shakespeare
/// (40,000 lines of the plays, public domain, as collected for karpathy/char-rnn), 1.1 MB of text
/// stored gzip-compressed inside the library.
/// </summary>
public static class DefaultCorpus
{
    private static readonly Lazy<string> Cached = new(Load);

    /// <summary>A short name for reports.</summary>
    public const string Name = "tinyshakespeare (embedded)";

    /// <summary>The whole text.</summary>
    public static string Text => Cached.Value;

    private static string Load()
    {
        using var stream = typeof(DefaultCorpus).Assembly.GetManifestResourceStream("GpuRnn.tinyshakespeare.txt.gz")
            ?? throw new InvalidOperationException("the embedded default corpus is missing from the GpuRnn assembly");
        using var gzip = new GZipStream(stream, CompressionMode.Decompress);
        using var reader = new StreamReader(gzip, Encoding.UTF8);
        return reader.ReadToEnd();
    }
}
