#:project ../src/GpuRnn.Core/GpuRnn.Core.csproj
#:property PublishAot=false
// A character-level language model on the embedded Tiny Shakespeare corpus: train, save, load, sample.
//   dotnet run examples/char_lm.cs                               (300 steps of H=128: a few minutes on a CPU)
//   dotnet run examples/char_lm.cs -- --steps 5 --hidden 8 --device cpu   (what CI runs)
// PublishAot=false: ILGPU compiles kernels at run time, which Native AOT (a file-based app's default) cannot.
using GpuRnn;

string Arg(string name, string fallback) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault() ?? fallback;
int steps = int.Parse(Arg("--steps", "300")), hidden = int.Parse(Arg("--hidden", "128"));
string device = Arg("--device", "auto"), output = Arg("--out", Path.Combine("out", "char_lm.safetensors"));

var data = TextData.Stream(DefaultCorpus.Text);          // or TextData.Stream(File.ReadAllText("input.txt"))
using (var model = TextModel.Create(data, new ModelSettings { Hidden = hidden, Layers = 1 }, device))
{
    Console.WriteLine($"device {model.Network.Device.Info}; vocabulary {model.Config.Vocab}");
    model.Fit(data, new FitSettings { Steps = steps, Batch = 32, SeqLen = 64, ReportEvery = Math.Min(50, steps),
                                      Progress = (step, loss) => Console.WriteLine($"step {step}: loss {loss:F3}") });
    model.Save(output);
}
using var trained = TextModel.Load(output, device);
Console.WriteLine(trained.Sample("ROMEO:", length: 300, temperature: 0.8f, seed: 7));
