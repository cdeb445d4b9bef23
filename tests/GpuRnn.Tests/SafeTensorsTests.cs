using System.Buffers.Binary;
using System.Text;
using GpuRnn.Checkpoints;
using NUnit.Framework;

namespace GpuRnn.Tests;

/// <summary>
/// The safetensors reader and writer (DESIGN.md §7): byte compatibility with the published format,
/// round trips, one test per rejection rule, truncation at every length, seeded fuzzing (every
/// input either loads or throws <see cref="GpuRnnException"/>), and the atomic write.
/// </summary>
[TestFixture]
public sealed class SafeTensorsTests
{
    // The display name every in-memory read uses; error messages must start with it.
    private const string Name = "bad.safetensors";

    private string folder = "";

    [SetUp]
    public void SetUp()
    {
        folder = Path.Combine(Path.GetTempPath(), "gpurnn-st-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
    }

    [TearDown]
    public void TearDown()
    {
        if (Directory.Exists(folder))
            Directory.Delete(folder, recursive: true);
    }

    // ---------------------------------------------------------------- helpers

    private static byte[] Serialize(SafeTensorsFile file)
    {
        var stream = new MemoryStream();
        file.Write(stream);
        return stream.ToArray();
    }

    private static SafeTensorsFile Parse(byte[] bytes) => SafeTensorsFile.Read(new MemoryStream(bytes), Name);

    /// <summary>
    /// A file built by hand: the 8-byte little-endian length, the header JSON padded with spaces to a
    /// multiple of 8 (as the Python library does), then <paramref name="dataBytes"/> bytes of data.
    /// </summary>
    private static byte[] Raw(string headerJson, int dataBytes)
    {
        byte[] json = Encoding.UTF8.GetBytes(headerJson);
        int padded = (json.Length + 7) / 8 * 8;
        var bytes = new byte[8 + padded + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)padded);
        json.CopyTo(bytes, 8);
        bytes.AsSpan(8 + json.Length, padded - json.Length).Fill((byte)' ');
        return bytes;
    }

    /// <summary>Reading must fail with a GpuRnnException whose message names the file and every given word.</summary>
    private static string Rejects(byte[] bytes, params string[] words)
    {
        var e = Assert.Throws<GpuRnnException>(() => Parse(bytes))!;
        Assert.That(e.Message, Does.StartWith(Name + ": "));
        foreach (string w in words)
            Assert.That(e.Message, Does.Contain(w));
        Assert.That(e.Message, Does.Not.Contain("\n"), "messages are one line");
        return e.Message;
    }

    private static string Entry(string name, string shape, long begin, long end, string dtype = "F32") =>
        $"\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape},\"data_offsets\":[{begin},{end}]}}";

    private static void AssertSame(SafeTensorsFile expected, SafeTensorsFile actual)
    {
        Assert.That(actual.Tensors.Select(t => t.Name), Is.EqualTo(expected.Tensors.Select(t => t.Name)));
        for (int i = 0; i < expected.Tensors.Count; i++)
        {
            TensorEntry e = expected.Tensors[i], a = actual.Tensors[i];
            Assert.That(a.Shape, Is.EqualTo(e.Shape), e.Name);
            // Bitwise: NaN payloads, -0 and subnormals must survive unchanged.
            Assert.That(a.Data.Select(BitConverter.SingleToInt32Bits),
                Is.EqualTo(e.Data.Select(BitConverter.SingleToInt32Bits)), e.Name);
        }
        Assert.That(actual.Metadata, Is.EquivalentTo(expected.Metadata));
    }

    private static SafeTensorsFile Sample()
    {
        var rng = new Random(7);
        float[] Rand(int n) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        return new SafeTensorsFile(
        [
            new TensorEntry("embed.weight", [3, 4], Rand(12)),                     // [V=3, H=4]
            new TensorEntry("scalar", [], [42.5f]),                                  // 0-d
            new TensorEntry("empty", [0], []),
            new TensorEntry("empty.3d", [2, 0, 3], []),
            new TensorEntry("special", [7], [float.NaN, float.PositiveInfinity, float.NegativeInfinity,
                -0f, float.Epsilon, float.MaxValue, BitConverter.Int32BitsToSingle(0x7FC00123)]),
            new TensorEntry("rnn.weight_ih_l0.ünï", [5, 3], Rand(15)),              // [H=5, E=3]
        ],
        new Dictionary<string, string>
        {
            ["gpurnn.vocab"] = "[\"<pad>\",\"é\",\"日本\",\"😀\",\"\\n\",\"\\\"\"]",
            ["gpurnn.tokenizer"] = "char",
            ["ключ"] = "line1\nline2\t\"quoted\"",
            ["empty"] = "",
        });
    }

    // ---------------------------------------------------------------- round trip and compatibility

    [Test]
    public void RoundTripKeepsDataShapesAndMetadata()
    {
        SafeTensorsFile original = Sample();
        byte[] bytes = Serialize(original);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.That(headerLength % 8, Is.EqualTo(0UL), "header padded to 8 bytes");
        Assert.That((ulong)bytes.Length, Is.EqualTo(8 + headerLength + 4 * (12 + 1 + 7 + 15)));

        SafeTensorsFile back = Parse(bytes);
        AssertSame(original, back);
        Assert.That(back.Find("scalar")!.Shape, Is.Empty);
        Assert.That(back.Find("scalar")!.Data, Is.EqualTo(new[] { 42.5f }));
        Assert.That(back.Find("missing"), Is.Null);
        Assert.That(Serialize(back), Is.EqualTo(bytes), "re-serialising a read file gives the same bytes");
    }

    [Test]
    public void MetadataOrderDoesNotChangeTheBytes()
    {
        TensorEntry[] t = [new("a", [1], [1f])];
        var one = new SafeTensorsFile(t, new Dictionary<string, string> { ["b"] = "2", ["a"] = "1", ["c"] = "3" });
        var two = new SafeTensorsFile(t, new Dictionary<string, string> { ["c"] = "3", ["a"] = "1", ["b"] = "2" });
        Assert.That(Serialize(one), Is.EqualTo(Serialize(two)));
        Assert.That(one.Metadata.Keys, Is.EqualTo(new[] { "a", "b", "c" }));
    }

    [Test]
    public void WriterMatchesThePublishedFormatByteForByte()
    {
        // What safetensors.torch.save_file({"a": torch.tensor([1.0, 2.0])}) writes: length, JSON with
        // no spaces, space padding to 8, then little-endian F32.
        const string json = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
        var expected = new List<byte>();
        int padded = (json.Length + 7) / 8 * 8;
        var prefix = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)padded);
        expected.AddRange(prefix);
        expected.AddRange(Encoding.ASCII.GetBytes(json));
        expected.AddRange(Enumerable.Repeat((byte)' ', padded - json.Length));
        expected.AddRange([0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0x40]); // 1.0f, 2.0f

        var file = new SafeTensorsFile([new TensorEntry("a", [2], [1f, 2f])], new Dictionary<string, string>());
        Assert.That(Serialize(file), Is.EqualTo(expected.ToArray()));

        SafeTensorsFile read = Parse(expected.ToArray());
        Assert.That(read.Tensors, Has.Count.EqualTo(1));
        Assert.That(read.Tensors[0].Name, Is.EqualTo("a"));
        Assert.That(read.Tensors[0].Shape, Is.EqualTo(new[] { 2 }));
        Assert.That(read.Tensors[0].Data, Is.EqualTo(new[] { 1f, 2f }));
        Assert.That(read.Metadata, Is.Empty);
    }

    [Test]
    public void ReadsPythonStyleHeaderWithMetadataAndUnsortedEntries()
    {
        // The Python library puts __metadata__ first and may list tensors in any order; keys may be
        // escaped, and the padding is plain whitespace.
        string header = "{\"__metadata__\":{\"format\":\"pt\"}," + Entry("b", "[1,2]", 4, 12) + "," +
                        Entry("\\u0061", "[1]", 0, 4) + "}";
        byte[] bytes = Raw(header, 12);
        int data = bytes.Length - 12;
        BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(data), 3f);
        BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(data + 4), 4f);
        BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(data + 8), 5f);

        SafeTensorsFile f = Parse(bytes);
        Assert.That(f.Tensors.Select(t => t.Name), Is.EqualTo(new[] { "a", "b" }), "data-offset order");
        Assert.That(f.Find("a")!.Data, Is.EqualTo(new[] { 3f }));
        Assert.That(f.Find("b")!.Shape, Is.EqualTo(new[] { 1, 2 }));
        Assert.That(f.Find("b")!.Data, Is.EqualTo(new[] { 4f, 5f }));
        Assert.That(f.Metadata["format"], Is.EqualTo("pt"));
    }

    [Test]
    public void EmptyFileWithNoTensorsLoads()
    {
        SafeTensorsFile f = Parse(Raw("{}", 0));
        Assert.That(f.Tensors, Is.Empty);
        Assert.That(f.Metadata, Is.Empty);
    }

    [Test]
    public void NonSeekableStreamIsRead()
    {
        byte[] bytes = Serialize(Sample());
        using var pipe = new NonSeekableStream(bytes);
        AssertSame(Sample(), SafeTensorsFile.Read(pipe, Name));
    }

    // ---------------------------------------------------------------- rejection rules: size and framing

    [Test]
    public void RejectsFileShorterThanTheLengthPrefix() => Rejects([1, 2, 3], "too short");

    [Test]
    public void RejectsHeaderLengthZero() => Rejects(new byte[16], "header length is 0");

    [Test]
    public void RejectsHeaderLengthPastTheEndOfTheFile()
    {
        byte[] bytes = Raw("{}", 0);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, 9999999);
        Assert.That(Rejects(bytes, "header length"), Is.EqualTo($"{Name}: header length 9999999 exceeds the file size 16"));
    }

    [TestCase(100_000_001UL)]
    [TestCase(ulong.MaxValue)]
    [TestCase(1UL << 63)]
    public void RejectsAbsurdHeaderLengthBeforeAllocating(ulong length)
    {
        byte[] bytes = Raw("{}", 0);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, length);
        Rejects(bytes, "header length", "limit");
    }

    // ---------------------------------------------------------------- rejection rules: header JSON

    [Test]
    public void RejectsHeaderThatIsNotUtf8()
    {
        byte[] bytes = Raw("{\"a\":{}}", 0);
        bytes[10] = 0xFF; // inside the key "a"
        Rejects(bytes, "header", "UTF-8");
    }

    [TestCase("{\"a\":", "JSON")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",}}", "JSON")]                 // trailing comma
    [TestCase("{} {}", "JSON")]                                         // two values
    [TestCase("{}x", "JSON")]
    [TestCase("{/*c*/}", "JSON")]                                       // comments are not JSON
    [TestCase("{\"a\":[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]}", "header")]   // deep nesting
    [TestCase("[]", "header")]
    [TestCase("\"x\"", "header")]
    [TestCase(" {}", "header")]                                         // must start with '{' (Rust rule)
    public void RejectsHeaderThatIsNotAJsonObject(string header, string word) => Rejects(Raw(header, 0), word);

    [Test]
    public void RejectsInvalidEscapeInAName() => Rejects(Raw("{\"\\ud800\":{}}", 0), "header");

    [TestCase("5")]
    [TestCase("[]")]
    [TestCase("\"F32\"")]
    [TestCase("null")]
    public void RejectsTensorEntryThatIsNotAnObject(string value) =>
        Rejects(Raw($"{{\"a\":{value}}}", 0), "tensor 'a'", "not an object");

    [TestCase("{\"shape\":[1],\"data_offsets\":[0,4]}", "no 'dtype'")]
    [TestCase("{\"dtype\":\"F32\",\"data_offsets\":[0,4]}", "no 'shape'")]
    [TestCase("{\"dtype\":\"F32\",\"shape\":[1]}", "no 'data_offsets'")]
    public void RejectsMissingField(string entry, string word) => Rejects(Raw($"{{\"a\":{entry}}}", 4), "tensor 'a'", word);

    [TestCase("{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}", "dtype")]
    [TestCase("{\"dtype\":null,\"shape\":[1],\"data_offsets\":[0,4]}", "dtype")]
    [TestCase("{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}", "shape")]
    [TestCase("{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}", "shape")]
    [TestCase("{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}", "shape")]
    [TestCase("{\"dtype\":\"F32\",\"shape\":[1e0],\"data_offsets\":[0,4]}", "shape")]
    [TestCase("{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}", "shape")]
    [TestCase("{\"dtype\":\"F32\",\"shape\":[[1]],\"data_offsets\":[0,4]}", "shape")]
    [TestCase("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":\"0,4\"}", "data_offsets")]
    [TestCase("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}", "data_offsets")]
    [TestCase("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,4]}", "data_offsets")]
    [TestCase("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}", "data_offsets")]
    [TestCase("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,18446744073709551620]}", "data_offsets")]
    public void RejectsWronglyTypedField(string entry, string word) => Rejects(Raw($"{{\"a\":{entry}}}", 4), "tensor 'a'", word);

    [TestCase("\"strides\":[1]")]
    [TestCase("\"DType\":\"F32\"")]
    public void RejectsUnknownFieldInATensorEntry(string extra) =>
        Rejects(Raw($"{{\"a\":{{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],{extra}}}}}", 4), "tensor 'a'", "unknown field");

    [TestCase("dtype", "\"F32\"")]
    [TestCase("shape", "[1]")]
    [TestCase("data_offsets", "[0,4]")]
    public void RejectsRepeatedFieldInATensorEntry(string field, string value) =>
        Rejects(Raw($"{{\"a\":{{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"{field}\":{value}}}}}", 4), "twice");

    [TestCase("F16")]
    [TestCase("BF16")]
    [TestCase("F64")]
    [TestCase("I64")]
    [TestCase("f32")]
    public void RejectsDtypeOtherThanF32(string dtype)
    {
        string msg = Rejects(Raw("{" + Entry("x", "[2]", 0, 8, dtype) + "}", 8), "dtype");
        Assert.That(msg, Is.EqualTo($"{Name}: tensor 'x' has dtype {dtype}; only F32 is supported"));
    }

    // ---------------------------------------------------------------- rejection rules: shapes and offsets

    [Test]
    public void RejectsShapeThatDisagreesWithTheOffsets() =>
        Rejects(Raw("{" + Entry("a", "[3]", 0, 8) + "}", 8), "tensor 'a'", "shape [3]", "needs 12 bytes", "span 8");

    [Test]
    public void RejectsShapeWhoseSizeOverflows() =>
        Rejects(Raw("{" + Entry("a", "[2147483647,2147483647,2147483647]", 0, 8) + "}", 8), "shape", "overflow");

    [Test]
    public void RejectsDimensionTooLargeForInt() =>
        Rejects(Raw("{" + Entry("a", "[4294967296,0]", 0, 0) + "}", 0), "shape", "too large");

    [Test]
    public void RejectsOffsetsWithBeginAfterEnd() =>
        Rejects(Raw("{" + Entry("a", "[1]", 8, 4) + "}", 8), "data_offsets [8,4]", "begin after end");

    [Test]
    public void RejectsOffsetsPastTheDataSection() =>
        Rejects(Raw("{" + Entry("a", "[3]", 0, 12) + "}", 8), "data_offsets [0,12]", "exceed the data section of 8 bytes");

    [Test]
    public void RejectsOverlappingTensors() =>
        Rejects(Raw("{" + Entry("a", "[2]", 0, 8) + "," + Entry("b", "[2]", 4, 12) + "}", 12), "tensor 'b'", "overlap", "tensor 'a'");

    [Test]
    public void RejectsTwoTensorsOnTheSameBytes() =>
        Rejects(Raw("{" + Entry("a", "[2]", 0, 8) + "," + Entry("b", "[2]", 0, 8) + "}", 8), "overlap");

    [Test]
    public void RejectsGapBetweenTensors() =>
        Rejects(Raw("{" + Entry("a", "[1]", 0, 4) + "," + Entry("b", "[1]", 8, 12) + "}", 12), "[4,8)", "tensor 'b'", "gap");

    [Test]
    public void RejectsGapBeforeTheFirstTensor() =>
        Rejects(Raw("{" + Entry("a", "[1]", 4, 8) + "}", 8), "[0,4)", "gap");

    [Test]
    public void RejectsDataAfterTheLastTensor() =>
        Rejects(Raw("{" + Entry("a", "[1]", 0, 4) + "}", 8), "[4,8)", "do not cover");

    [Test]
    public void RejectsDataWhenThereAreNoTensors() => Rejects(Raw("{}", 4), "[0,4)", "do not cover");

    [Test]
    public void RejectsHugeTensorInATinyFileWithoutAllocating()
    {
        // 4e12 bytes claimed: the offsets check must fire long before any allocation.
        Rejects(Raw("{" + Entry("w", "[1000000000,1000]", 0, 4_000_000_000_000) + "}", 8), "tensor 'w'", "exceed the data section");
        // Small offsets, huge shape: the size check catches it.
        Rejects(Raw("{" + Entry("w", "[1000000000,1000]", 0, 8) + "}", 8), "tensor 'w'", "needs 4000000000000 bytes");
    }

    // ---------------------------------------------------------------- rejection rules: names and metadata

    [Test]
    public void RejectsDuplicateTensorName() =>
        Rejects(Raw("{" + Entry("a", "[1]", 0, 4) + "," + Entry("a", "[1]", 4, 8) + "}", 8), "tensor 'a'", "twice");

    [Test]
    public void RejectsDuplicateTensorNameSpelledWithAnEscape() =>
        Rejects(Raw("{" + Entry("a", "[1]", 0, 4) + "," + Entry("\\u0061", "[1]", 4, 8) + "}", 8), "tensor 'a'", "twice");

    [TestCase("[]")]
    [TestCase("\"x\"")]
    [TestCase("null")]
    public void RejectsMetadataThatIsNotAnObject(string value) =>
        Rejects(Raw($"{{\"__metadata__\":{value}}}", 0), "__metadata__", "not an object");

    [TestCase("1")]
    [TestCase("null")]
    [TestCase("true")]
    [TestCase("[\"a\"]")]
    [TestCase("{}")]
    public void RejectsMetadataValueThatIsNotAString(string value) =>
        Rejects(Raw($"{{\"__metadata__\":{{\"k\":{value}}}}}", 0), "__metadata__", "'k'", "not a string");

    [Test]
    public void RejectsDuplicateMetadataKey() =>
        Rejects(Raw("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0), "__metadata__", "'k'", "twice");

    [Test]
    public void RejectsMetadataTwice() =>
        Rejects(Raw("{\"__metadata__\":{},\"__metadata__\":{}}", 0), "__metadata__", "twice");

    [Test]
    public void ControlCharactersInNamesAreEscapedInTheMessage()
    {
        string msg = Rejects(Raw("{" + Entry("a\\nb", "[1]", 0, 4, "F16") + "}", 4), "dtype");
        Assert.That(msg, Does.Contain("'a\\u000ab'"));
    }

    // ---------------------------------------------------------------- truncation and fuzzing

    [Test]
    public void TruncationAtEveryLengthIsRejected()
    {
        var small = new SafeTensorsFile(
            [new TensorEntry("w", [2, 2], [1f, 2f, 3f, 4f]), new TensorEntry("b", [], [5f])],
            new Dictionary<string, string> { ["k"] = "v" });
        byte[] bytes = Serialize(small);
        for (int length = 0; length < bytes.Length; length++)
        {
            int n = length;
            Assert.Throws<GpuRnnException>(() => Parse(bytes[..n]), $"truncated to {n} of {bytes.Length} bytes");
        }
        AssertSame(small, Parse(bytes));
    }

    [Test]
    public void FuzzedFilesLoadOrThrowGpuRnnException()
    {
        // Seeded so a failure reproduces: the case number and the exception are reported.
        const int Cases = 3000;
        var rng = new Random(20240611);
        var small = new SafeTensorsFile(
            [new TensorEntry("w", [2, 3], [1f, 2f, 3f, 4f, 5f, 6f]), new TensorEntry("s", [], [7f]), new TensorEntry("e", [0], [])],
            new Dictionary<string, string> { ["gpurnn.tokenizer"] = "char", ["x"] = "ü" });
        byte[] valid = Serialize(small);
        int headerEnd = 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(valid);
        // Bytes that keep JSON plausible, so mutations reach the semantic checks and not only the parser.
        byte[] jsonish = Encoding.ASCII.GetBytes("{}[],:\"0123456789-. eE\\u");

        int loaded = 0, rejected = 0;
        var failures = new List<string>();
        for (int c = 0; c < Cases; c++)
        {
            byte[] bytes = Mutate(valid, headerEnd, jsonish, rng);
            try
            {
                SafeTensorsFile f = Parse(bytes);
                loaded++;
                // Whatever loads must serialise and read back to the same contents.
                AssertSame(f, Parse(Serialize(f)));
            }
            catch (GpuRnnException e)
            {
                rejected++;
                if (!e.Message.StartsWith(Name + ": ", StringComparison.Ordinal) || e.Message.Contains('\n'))
                    failures.Add($"case {c}: bad message '{e.Message}'");
            }
            catch (Exception e) when (e is not AssertionException)
            {
                failures.Add($"case {c}: {e.GetType().Name}: {e.Message}");
            }
        }
        TestContext.Out.WriteLine($"{Cases} fuzz cases: {loaded} loaded, {rejected} rejected");
        Assert.That(failures, Is.Empty, string.Join("\n", failures.Take(10)));
        // Both outcomes must occur, or the fuzzer is not exercising the reader.
        Assert.That(loaded, Is.GreaterThan(50));
        Assert.That(rejected, Is.GreaterThan(Cases / 2));
    }

    /// <summary>One to three random edits: flips, JSON-ish bytes in the header, length changes, splices, cuts, inserts.</summary>
    private static byte[] Mutate(byte[] valid, int headerEnd, byte[] jsonish, Random rng)
    {
        var bytes = new List<byte>(valid);
        int edits = rng.Next(1, 4);
        for (int e = 0; e < edits; e++)
        {
            int n = bytes.Count;
            switch (rng.Next(8))
            {
                case 0: // flip bits anywhere
                    if (n > 0) bytes[rng.Next(n)] ^= (byte)rng.Next(1, 256);
                    break;
                case 1: // a JSON-ish byte inside the header
                    if (headerEnd > 8 && headerEnd <= n) bytes[rng.Next(8, headerEnd)] = jsonish[rng.Next(jsonish.Length)];
                    break;
                case 2: // a new header length: near the real one, or anything
                {
                    ulong len = rng.Next(3) switch
                    {
                        0 => (ulong)Math.Max(0, headerEnd - 8 + rng.Next(-16, 17)),
                        1 => (ulong)rng.NextInt64(),
                        _ => 1UL << rng.Next(64),
                    };
                    var prefix = new byte[8];
                    BinaryPrimitives.WriteUInt64LittleEndian(prefix, len);
                    for (int i = 0; i < 8 && i < n; i++) bytes[i] = prefix[i];
                    break;
                }
                case 3: // splice: copy a chunk of the file over another place
                    if (n > 2)
                    {
                        int from = rng.Next(n), to = rng.Next(n), len = rng.Next(1, Math.Min(16, n - Math.Max(from, to)) + 1);
                        for (int i = 0; i < len && from + i < n && to + i < n; i++) bytes[to + i] = valid[Math.Min(from + i, valid.Length - 1)];
                    }
                    break;
                case 4: // truncate
                    if (n > 0) { int keep = rng.Next(n); bytes.RemoveRange(keep, n - keep); }
                    break;
                case 5: // insert random bytes
                {
                    var extra = new byte[rng.Next(1, 9)];
                    rng.NextBytes(extra);
                    bytes.InsertRange(rng.Next(n + 1), extra);
                    break;
                }
                case 6: // delete a few bytes
                    if (n > 0) { int at = rng.Next(n); bytes.RemoveRange(at, Math.Min(rng.Next(1, 9), n - at)); }
                    break;
                default: // flip a data byte only: must usually still load
                    if (headerEnd < n) bytes[rng.Next(headerEnd, n)] ^= (byte)rng.Next(1, 256);
                    break;
            }
        }
        return bytes.ToArray();
    }

    // ---------------------------------------------------------------- files and the atomic write

    private string[] TempFiles() => Directory.GetFiles(folder, "*.tmp", SearchOption.AllDirectories);

    [Test]
    public void ReadPathRoundTripAndOverwrite()
    {
        string path = Path.Combine(folder, "model.safetensors");
        var first = new SafeTensorsFile([new TensorEntry("a", [1], [1f])], new Dictionary<string, string>());
        first.Write(path);
        AssertSame(first, SafeTensorsFile.Read(path));

        SafeTensorsFile second = Sample();
        second.Write(path);
        AssertSame(second, SafeTensorsFile.Read(path));
        Assert.That(TempFiles(), Is.Empty);
    }

    [Test]
    public void WriteCreatesMissingFolders()
    {
        string path = Path.Combine(folder, "runs", "a", "b", "model.safetensors");
        Sample().Write(path);
        AssertSame(Sample(), SafeTensorsFile.Read(path));
        Assert.That(TempFiles(), Is.Empty);
    }

    [Test]
    public void WriteUnderAFileFailsWithTheTargetPath()
    {
        string blocker = Path.Combine(folder, "blocker");
        File.WriteAllText(blocker, "not a folder");
        string path = Path.Combine(blocker, "model.safetensors");
        var e = Assert.Throws<GpuRnnException>(() => Sample().Write(path))!;
        Assert.That(e.Message, Does.StartWith(path + ": "));
        Assert.That(File.ReadAllText(blocker), Is.EqualTo("not a folder"));
        Assert.That(TempFiles(), Is.Empty);
    }

    [Test]
    public void FailedRenameDeletesTheTemporaryFile()
    {
        // The target is a folder: the temporary file is fully written and flushed, then the rename
        // fails. The temporary file must go and the target must be untouched.
        string path = Path.Combine(folder, "model.safetensors");
        Directory.CreateDirectory(path);
        File.WriteAllText(Path.Combine(path, "keep.txt"), "keep");
        var e = Assert.Throws<GpuRnnException>(() => Sample().Write(path))!;
        Assert.That(e.Message, Does.StartWith(path + ": "));
        Assert.That(File.ReadAllText(Path.Combine(path, "keep.txt")), Is.EqualTo("keep"));
        Assert.That(TempFiles(), Is.Empty);
    }

    [Test]
    public void InvalidTensorLeavesTheOldFileIntact()
    {
        string path = Path.Combine(folder, "model.safetensors");
        var old = new SafeTensorsFile([new TensorEntry("a", [1], [1f])], new Dictionary<string, string>());
        old.Write(path);
        byte[] before = File.ReadAllBytes(path);

        // TensorEntry's arrays are mutable: a shape changed after construction must not reach the disk.
        var entry = new TensorEntry("b", [2], [1f, 2f]);
        var bad = new SafeTensorsFile([new TensorEntry("a", [1], [3f]), entry], new Dictionary<string, string>());
        entry.Shape[0] = 3;
        Assert.Throws<InvalidOperationException>(() => bad.Write(path));
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(before));
        Assert.That(TempFiles(), Is.Empty);
    }

    [Test]
    public void ReadMissingFileNamesThePath()
    {
        string path = Path.Combine(folder, "nope.safetensors");
        var e = Assert.Throws<GpuRnnException>(() => SafeTensorsFile.Read(path))!;
        Assert.That(e.Message, Does.StartWith(path + ": "));
    }

    [Test]
    public void ReadCorruptFileNamesThePath()
    {
        string path = Path.Combine(folder, "model.safetensors");
        File.WriteAllBytes(path, [1, 2, 3]);
        var e = Assert.Throws<GpuRnnException>(() => SafeTensorsFile.Read(path))!;
        Assert.That(e.Message, Is.EqualTo($"{path}: file is 3 bytes, too short for the 8-byte header length"));
    }

    // ---------------------------------------------------------------- constructor guards

    [Test]
    public void ConstructorRejectsProgrammingErrors()
    {
        var none = new Dictionary<string, string>();
        Assert.Throws<ArgumentException>(() => new SafeTensorsFile([new("a", [1], [1f]), new("a", [1], [1f])], none));
        Assert.Throws<ArgumentException>(() => new SafeTensorsFile([new("a", [2], [1f])], none));
        Assert.Throws<ArgumentException>(() => new SafeTensorsFile([new("a", [-1], [])], none));
        Assert.Throws<ArgumentException>(() => new SafeTensorsFile([new("__metadata__", [1], [1f])], none));
        Assert.Throws<ArgumentException>(() => new SafeTensorsFile([new("\ud800", [1], [1f])], none));
        Assert.Throws<ArgumentException>(() => new SafeTensorsFile([], new Dictionary<string, string> { ["k"] = "\udc00" }));
    }

    /// <summary>A read-only stream that cannot seek, like a pipe.</summary>
    private sealed class NonSeekableStream(byte[] bytes) : Stream
    {
        private readonly MemoryStream inner = new(bytes);
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
