using System.Text;

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
    public static Vocabulary FromText(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var points = new SortedSet<int>();
        foreach (Rune r in text.EnumerateRunes())
            points.Add(r.Value);
        return new Vocabulary(Specials.Concat(points.Select(p => char.ConvertFromUtf32(p))));
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

    /// <summary>
    /// Character ids of <paramref name="text"/>; a code point outside the vocabulary becomes
    /// <c>&lt;unk&gt;</c>, or is an error when the vocabulary has none.
    /// </summary>
    /// <exception cref="GpuRnnException">An unknown character and no <c>&lt;unk&gt;</c>.</exception>
    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var result = new List<int>(text.Length);
        int unk = UnknownId;
        foreach (Rune r in text.EnumerateRunes())
        {
            int id = IdOf(r.ToString());
            if (id < 0)
            {
                if (unk < 0)
                    throw new GpuRnnException($"text: character U+{r.Value:X4} is not in the vocabulary, which has no {Unk}");
                id = unk;
            }
            result.Add(id);
        }
        return result.ToArray();
    }

    /// <summary>The text of a sequence of ids (special tokens written as their names, except padding, which is dropped).</summary>
    public string Decode(IEnumerable<int> sequence)
    {
        var sb = new StringBuilder();
        foreach (int id in sequence)
        {
            if (tokens[id] != Pad)
                sb.Append(tokens[id]);
        }
        return sb.ToString();
    }
}
