using System.Text;

namespace GpuRnn;

/// <summary>How text is cut into tokens.</summary>
public enum TokenizerKind
{
    /// <summary>One token per Unicode code point.</summary>
    Char,
    /// <summary>Words and punctuation marks; every line ends with <c>&lt;eos&gt;</c> (PyTorch word_language_model).</summary>
    Word,
}

/// <summary>Splits text into tokens and joins them back.</summary>
public static class Tokenizer
{
    /// <summary>The name stored in checkpoints (<c>gpurnn.tokenizer</c>).</summary>
    public static string Name(TokenizerKind kind) => kind switch
    {
        TokenizerKind.Char => "char",
        TokenizerKind.Word => "word",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown tokenizer"),
    };

    /// <summary>The kind of a stored name.</summary>
    /// <exception cref="GpuRnnException">Unknown name.</exception>
    public static TokenizerKind Parse(string name) => name switch
    {
        "char" => TokenizerKind.Char,
        "word" => TokenizerKind.Word,
        _ => throw new GpuRnnException("tokenizer", $"{name}: use char or word"),
    };

    /// <summary>
    /// The tokens of <paramref name="text"/>. Char: every code point (newlines included). Word: runs
    /// of letters, digits, apostrophes and hyphens are words, every other non-space character is a
    /// token of its own, and each line ends with <c>&lt;eos&gt;</c>.
    /// </summary>
    public static List<string> Split(string text, TokenizerKind kind)
    {
        ArgumentNullException.ThrowIfNull(text);
        var tokens = new List<string>();
        switch (kind)
        {
            case TokenizerKind.Char:
                foreach (Rune r in text.EnumerateRunes())
                    tokens.Add(r.ToString());
                break;
            case TokenizerKind.Word:
                foreach (string line in text.Split('\n'))
                {
                    var word = new StringBuilder();
                    foreach (Rune r in line.EnumerateRunes())
                    {
                        if (Rune.IsLetterOrDigit(r) || r.Value == '\'' || r.Value == '-')
                        {
                            word.Append(r.ToString());
                            continue;
                        }
                        Flush(word, tokens);
                        if (!Rune.IsWhiteSpace(r))
                            tokens.Add(r.ToString());
                    }
                    Flush(word, tokens);
                    tokens.Add(Vocabulary.Eos);
                }
                if (text.EndsWith('\n'))
                    tokens.RemoveAt(tokens.Count - 1); // the empty "line" after a final newline has no end to mark
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown tokenizer");
        }
        return tokens;
    }

    private static void Flush(StringBuilder word, List<string> tokens)
    {
        if (word.Length > 0)
            tokens.Add(word.ToString());
        word.Clear();
    }

    /// <summary>Text of tokens: char tokens are concatenated; word tokens are joined by spaces, with <c>&lt;eos&gt;</c> as a line break.</summary>
    public static string Join(IEnumerable<string> tokens, TokenizerKind kind)
    {
        var sb = new StringBuilder();
        foreach (string t in tokens)
        {
            switch (kind)
            {
                case TokenizerKind.Char:
                    sb.Append(t);
                    break;
                case TokenizerKind.Word:
                    if (t == Vocabulary.Eos)
                    {
                        sb.Append('\n');
                        continue;
                    }
                    if (sb.Length > 0 && sb[^1] != '\n')
                        sb.Append(' ');
                    sb.Append(t);
                    break;
                default:
                    throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown tokenizer");
            }
        }
        return sb.ToString();
    }

    /// <summary>
    /// The distinct tokens seen at least <paramref name="minCount"/> times, the <paramref name="maxSize"/>
    /// most frequent of them (0 = all), most frequent first with ties in ordinal order.
    /// </summary>
    internal static IEnumerable<string> ByFrequency(IEnumerable<string> tokens, int maxSize, int minCount)
    {
        var kept = tokens.GroupBy(t => t, StringComparer.Ordinal)
                         .Where(g => g.Count() >= minCount)
                         .OrderByDescending(g => g.Count())
                         .ThenBy(g => g.Key, StringComparer.Ordinal)
                         .Select(g => g.Key);
        return maxSize > 0 ? kept.Take(maxSize) : kept;
    }
}
