#:project ../src/GpuRnn.Core/GpuRnn.Core.csproj
#:property PublishAot=false
// A many-to-one classifier: spam or ham on the SMS Spam Collection (data/sms_spam.tsv, label<TAB>text).
//   dotnet run examples/classifier.cs                              (600 steps of H=64)
//   dotnet run examples/classifier.cs -- --steps 5 --hidden 8 --device cpu   (what CI runs)
using GpuRnn;

string Arg(string name, string fallback) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault() ?? fallback;
int steps = int.Parse(Arg("--steps", "600")), hidden = int.Parse(Arg("--hidden", "64"));
string device = Arg("--device", "auto");
string here = AppContext.GetData("EntryPointFileDirectoryPath") as string ?? "examples";

var all = TextData.FromFile(Path.Combine(here, "..", "data", "sms_spam.tsv"), DataMode.Labeled);
var (train, test) = all.Split(0.1);                      // the last 10% held out
var words = new ModelSettings { Hidden = hidden, Tokenizer = TokenizerKind.Word, MaxVocab = 5000 };
using var model = TextModel.Create(train, words, device);
model.Fit(train, new FitSettings { Steps = steps, Batch = 32, ReportEvery = Math.Min(100, steps),
                                   Progress = (step, loss) => Console.WriteLine($"step {step}: loss {loss:F3}") });
Console.WriteLine(model.Evaluate(test).Classes!.Report()); // accuracy, per-class precision/recall/F1, confusion
foreach (string text in new[] { "WINNER! claim your free prize now", "are we still on for lunch tomorrow?" })
{
    var answer = model.Predict(text);
    Console.WriteLine($"{answer.Label} {answer.Probability:F3}  {text}");
}
