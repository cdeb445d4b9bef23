using GpuRnn.Kernels;
using ILGPU;
using ILGPU.Runtime;

namespace GpuRnn;

/// <summary>Sizes of a recurrent model: a language model (decoder over the vocabulary at every step) or, with classes, a many-to-one classifier (decoder over the classes from each sequence's last true state), or an encoder–decoder.</summary>
/// <param name="Vocab">V, the vocabulary size (the one-hot input width).</param>
/// <param name="Hidden">H, hidden units per layer.</param>
/// <param name="Layers">L, stacked recurrent layers.</param>
/// <param name="Classes">C, the classes of a classifier; 0 for a language model.</param>
/// <param name="EncoderDecoder">True for an encoder–decoder: an encoder stack reads the source, its final states start the decoder stack.</param>
/// <param name="Cell">The recurrent cell of every layer: Elman (tanh), GRU or LSTM, as PyTorch's.</param>
/// <param name="Dropout">
/// Training only: the probability p in [0, 1) of zeroing each output of each layer as the layer above or the output head reads it
/// (PyTorch's <c>nn.RNN(dropout=p)</c> between layers, and the same p before the head; an encoder's top layer is not dropped);
/// kept outputs are scaled by 1/(1 − p). Evaluation, prediction and sampling never drop. 0 = off.
/// </param>
/// <param name="Bidirectional">
/// Each layer of the classifier's stack (or of an encoder–decoder's encoder) also reads every sequence backwards, from its own
/// last true token (PyTorch's <c>bidirectional=True</c> on packed sequences): the layer above reads [forward; reverse] (2H).
/// Not for a language model, which would see the future.
/// </param>
/// <param name="Attention">An encoder–decoder's attention over the encoder's top-layer outputs (Luong dot or general; none by default).</param>
public sealed record ModelConfig(int Vocab, int Hidden, int Layers, int Classes = 0, bool EncoderDecoder = false, CellKind Cell = CellKind.Elman, float Dropout = 0f, bool Bidirectional = false,
    AttentionKind Attention = AttentionKind.None)
{
    /// <summary>Directions of the bidirectional stack: 2 when <see cref="Bidirectional"/>, else 1.</summary>
    public int Directions => Bidirectional ? 2 : 1;

    /// <summary>True for a many-to-one classifier.</summary>
    public bool IsClassifier => Classes > 0;

    /// <summary>Rows of the decoder: C for a classifier, V for a language model.</summary>
    public int Outputs => IsClassifier ? Classes : Vocab;
}

/// <summary>
/// The parameters of an L-layer recurrent model (Elman, GRU or LSTM cells, as <see cref="ModelConfig.Cell"/>
/// says) with a linear decoder: one flat device buffer with a named view per tensor (DESIGN.md §2).
/// Running it is the business of <see cref="Trainer"/>, <see cref="Predictor"/> and <see cref="Generator"/>.
/// </summary>
public sealed class RnnModel : IDisposable
{
    private readonly MemoryBuffer1D<float, Stride1D.Dense> parameters; // [P]

    /// <summary>
    /// Creates the model on <paramref name="device"/>, initialised like PyTorch's <c>nn.RNN</c>, <c>nn.GRU</c> or <c>nn.LSTM</c> and
    /// <c>nn.Linear</c>: every tensor uniform(−1/√H, 1/√H), drawn from a host PRNG seeded with
    /// <paramref name="seed"/> in layout order, so a seed gives the same model on every device.
    /// </summary>
    public RnnModel(GpuDevice device, ModelConfig config, int seed)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(config);
        Device = device;
        Config = config;
        Layout = new ParameterLayout(config);
        parameters = device.Accelerator.Allocate1D<float>(Layout.Count);
        var host = new float[Layout.Count];
        var rng = new Random(seed);
        double bound = 1.0 / Math.Sqrt(config.Hidden);
        for (int i = 0; i < host.Length; i++)
            host[i] = (float)((rng.NextDouble() * 2 - 1) * bound);
        device.Kernels.Upload<float>(host, parameters.View);
    }

    /// <summary>The device the parameters live on.</summary>
    public GpuDevice Device { get; }

    /// <summary>The model's sizes.</summary>
    public ModelConfig Config { get; }

    /// <summary>
    /// How the stacks run their time loops (<see cref="GpuRnn.Recurrence"/>): a run setting, not part of the checkpoint, since
    /// both paths compute the same model. Default <see cref="Recurrence.Auto"/>.
    /// </summary>
    public Recurrence Recurrence { get; set; } = Recurrence.Auto;

    /// <summary>The path <see cref="Recurrence"/> runs on this device for this model (<see cref="Recurrence.Auto"/> resolved).</summary>
    public Recurrence RecurrencePath => RecurrenceNames.Resolve(Recurrence, Device.Info.IsGpu, Config.Cell, Config.Hidden);

    /// <summary>Names, shapes and offsets of the tensors in the flat buffer.</summary>
    public ParameterLayout Layout { get; }

    /// <summary>The whole flat parameter buffer [P].</summary>
    public ArrayView<float> Parameters => parameters.View;

    /// <summary>The device view of one tensor.</summary>
    public ArrayView<float> View(string name) => View(Layout[name]);

    /// <summary>The device view of one tensor.</summary>
    public ArrayView<float> View(ParameterTensor tensor) => ViewOf(parameters.View, tensor);

    /// <summary>The view of tensor <paramref name="name"/> inside any buffer laid out like the parameters (gradients, optimizer slots).</summary>
    public ArrayView<float> ViewOf(ArrayView<float> flat, string name) => ViewOf(flat, Layout[name]);

    /// <summary>The view of <paramref name="tensor"/> inside any buffer laid out like the parameters.</summary>
    public static ArrayView<float> ViewOf(ArrayView<float> flat, ParameterTensor tensor) => flat.SubView(tensor.Offset, tensor.Length);

    /// <summary>Copies one tensor to the host (row-major).</summary>
    public float[] GetTensor(string name)
    {
        var t = Layout[name];
        var host = new float[t.Length];
        Device.Kernels.Download(View(name), host);
        return host;
    }

    /// <summary>Overwrites one tensor from the host (row-major).</summary>
    /// <exception cref="GpuRnnException">The value count does not match the tensor's shape.</exception>
    public void SetTensor(string name, ReadOnlySpan<float> values)
    {
        var t = Layout[name];
        if (values.Length != t.Length)
            throw new GpuRnnException($"{name}: {values.Length} values given, its shape [{string.Join(", ", t.Shape)}] holds {t.Length}");
        Device.Kernels.Upload(values, View(name));
    }

    /// <summary>Releases the parameter buffer.</summary>
    public void Dispose() => parameters.Dispose();
}
