namespace GpuRnn;

/// <summary>
/// Token ↔ id mapping (DESIGN.md §6): the special tokens first, <c>&lt;pad&gt;</c> 0,
/// <c>&lt;unk&gt;</c> 1, <c>&lt;bos&gt;</c> 2, <c>&lt;eos&gt;</c> 3, then the corpus tokens; for
/// characters, Unicode code points in ascending order.
/// </summary>
public sealed class Vocabulary
{
    /// <summary>Padding token.</summary>
    public const string Pad = "<pad>";
    /// <summary>Unknown token.</summary>
    public const string Unk = "<unk>";
    /// <summary>Begin-of-sequence token.</summary>
    public const string Bos = "<bos>";
    /// <summary>End-of-sequence token.</summary>
    public const string Eos = "<eos>";

    /// <summary>The special tokens in id order.</summary>
    public static IReadOnlyList<string> Specials { get; } = [Pad, Unk, Bos, Eos];

    private readonly string[] tokens;
    private readonly Dictionary<string, int> ids;

    /// <summary>Creates a vocabulary from its tokens in id order (e.g. read back from a checkpoint).</summary>
    /// <exception cref="GpuRnnException">A token is empty or repeated.</exception>
    public Vocabulary(IEnumerable<string> tokensInIdOrder)
    {
        ArgumentNullException.ThrowIfNull(tokensInIdOrder);
        tokens = tokensInIdOrder.ToArray();
        if (tokens.Length == 0)
            throw new GpuRnnException("vocabulary: it has no tokens");
        ids = new Dictionary<string, int>(tokens.Length, StringComparer.Ordinal);
        for (int i = 0; i < tokens.Length; i++)
        {
            if (string.IsNullOrEmpty(tokens[i]))
                throw new GpuRnnException($"vocabulary: token {i} is empty");
            if (!ids.TryAdd(tokens[i], i))
                throw new GpuRnnException($"vocabulary: token {i} '{tokens[i]}' repeats token {ids[tokens[i]]}");
        }
    }

    /// <summary>A character vocabulary: the special tokens, then every code point of <paramref name="text"/> in ascending order.</summary>
    public static Vocabulary FromText(string text) => FromText(text, TokenizerKind.Char);

    /// <summary>
    /// A vocabulary of <paramref name="text"/>: the special tokens, then characters by code point, or
    /// words by frequency (ties alphabetical), keeping at most <paramref name="maxSize"/> corpus
    /// tokens (0 = all) seen at least <paramref name="minCount"/> times; the rest become <c>&lt;unk&gt;</c>.
    /// </summary>
    public static Vocabulary FromText(string text, TokenizerKind kind, int maxSize = 0, int minCount = 1)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (maxSize < 0)
            throw new GpuRnnException(nameof(maxSize), $"must be 0 (no limit) or positive (got {maxSize})");
        if (minCount < 1)
            throw new GpuRnnException(nameof(minCount), $"must be at least 1 (got {minCount})");
        var kept = Tokenizer.ByFrequency(Tokenizer.Split(text, kind).Where(t => !Specials.Contains(t)), maxSize, minCount);
        var ordered = kind switch
        {
            TokenizerKind.Char => kept.OrderBy(t => char.ConvertToUtf32(t, 0)),
            TokenizerKind.Word => kept,
            _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown tokenizer"),
        };
        return new Vocabulary(Specials.Concat(ordered));
    }

    /// <summary>Number of tokens, V.</summary>
    public int Count => tokens.Length;

    /// <summary>The tokens in id order.</summary>
    public IReadOnlyList<string> Tokens => tokens;

    /// <summary>The id of a token, or −1 when absent.</summary>
    public int IdOf(string token) => ids.GetValueOrDefault(token, -1);

    /// <summary>The token of an id.</summary>
    public string this[int id] => tokens[id];

    /// <summary>Id of <c>&lt;unk&gt;</c>, or −1 when this vocabulary has none.</summary>
    public int UnknownId => IdOf(Unk);

    /// <summary>Id of <c>&lt;eos&gt;</c>, or −1 when this vocabulary has none.</summary>
    public int EndId => IdOf(Eos);

    /// <summary>Character ids of <paramref name="text"/> (see the overload with a tokenizer).</summary>
    public int[] Encode(string text) => Encode(text, TokenizerKind.Char);

    /// <summary>
    /// Ids of the tokens of <paramref name="text"/>; a token outside the vocabulary becomes
    /// <c>&lt;unk&gt;</c>, or is an error when the vocabulary has none.
    /// </summary>
    /// <exception cref="GpuRnnException">An unknown token and no <c>&lt;unk&gt;</c>.</exception>
    public int[] Encode(string text, TokenizerKind kind)
    {
        var split = Tokenizer.Split(text, kind);
        var result = new int[split.Count];
        int unk = UnknownId;
        for (int i = 0; i < split.Count; i++)
        {
            int id = IdOf(split[i]);
            if (id < 0)
            {
                if (unk < 0)
                {
                    string shown = kind == TokenizerKind.Char ? $"character U+{char.ConvertToUtf32(split[i], 0):X4}" : $"word '{split[i]}'";
                    throw new GpuRnnException($"text: {shown} is not in the vocabulary, which has no {Unk}");
                }
                id = unk;
            }
            result[i] = id;
        }
        return result;
    }

    /// <summary>The text of character ids (see the overload with a tokenizer).</summary>
    public string Decode(IEnumerable<int> sequence) => Decode(sequence, TokenizerKind.Char);

    /// <summary>The text of a sequence of ids; padding is dropped, other special tokens are written by name (word <c>&lt;eos&gt;</c> as a line break).</summary>
    public string Decode(IEnumerable<int> sequence, TokenizerKind kind) =>
        Tokenizer.Join(sequence.Select(id => tokens[id]).Where(t => t != Pad), kind);
}
