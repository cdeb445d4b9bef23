using GpuRnn.Checkpoints;
using GpuRnn.Cli;
using NUnit.Framework;

namespace GpuRnn.Tests;

public sealed class ReporterAndTemporaryTests
{
    [Test]
    public void SavingRemovesTemporariesLeftByAKilledWriter()
    {
        string dir = Path.Combine(Path.GetTempPath(), "gpurnn-tmp-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string path = Path.Combine(dir, "m.safetensors");
            string stale = Path.Combine(dir, ".m.safetensors.abc123.tmp");
            string other = Path.Combine(dir, ".other.safetensors.abc123.tmp");
            File.WriteAllText(stale, "half a checkpoint");
            File.WriteAllText(other, "someone else's");
            var vocab = Vocabulary.FromText("ab");
            using var model = new RnnModel(TestDevices.Get("cpu"), new ModelConfig(vocab.Count, 3, 1), seed: 1);
            Checkpoint.Save(path, model, vocab, TokenizerKind.Char);
            Assert.That(File.Exists(stale), Is.False);
            Assert.That(File.Exists(other), Is.True, "only this checkpoint's temporaries");
            Assert.That(Checkpoint.Load(path).Config.Hidden, Is.EqualTo(3));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
