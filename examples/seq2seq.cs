#:project ../src/GpuRnn.Core/GpuRnn.Core.csproj
#:property PublishAot=false
// An encoder–decoder that learns to reverse short strings (pairs made here, like examples/make_pairs.py reverse).
//   dotnet run examples/seq2seq.cs                                 (800 steps of H=48: exact on held-out strings)
//   dotnet run examples/seq2seq.cs -- --steps 5 --hidden 8 --device cpu   (what CI runs)
using GpuRnn;

string Arg(string name, string fallback) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault() ?? fallback;
int steps = int.Parse(Arg("--steps", "800")), hidden = int.Parse(Arg("--hidden", "48"));
string device = Arg("--device", "auto");

var rng = new Random(1);
string Word() => new(Enumerable.Range(0, rng.Next(1, 8)).Select(_ => (char)('a' + rng.Next(5))).ToArray());
var pairs = Enumerable.Range(0, 5000).Select(_ => Word()).Select(w => (w, new string(w.Reverse().ToArray())));
var (train, test) = TextData.Pairs(pairs).Split(0.04);

using var model = TextModel.Create(train, new ModelSettings { Hidden = hidden }, device);
model.Fit(train, new FitSettings { Steps = steps, Batch = 32, ReportEvery = Math.Min(100, steps),
                                   Optimizer = new OptimizerSettings(OptimizerKind.Adam, 0.01f, ClipNorm: 5f),
                                   Progress = (step, loss) => Console.WriteLine($"step {step}: loss {loss:F3}") });
Console.WriteLine(model.Evaluate(test).Pairs!.Report());  // exact match and token accuracy on the held-out pairs
foreach (string source in new[] { "abcd", "eedcb" })
    Console.WriteLine($"{source} -> {model.Translate(source)}");
