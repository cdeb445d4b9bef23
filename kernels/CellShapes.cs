namespace GpuRnn.Kernels;

/// <summary>The recurrent cell of a layer (DESIGN.md §2); the numeric value is its gate count g.</summary>
public enum CellKind
{
    /// <summary>tanh RNN (<c>nn.RNN</c>): one gate.</summary>
    Elman = 1,

    /// <summary><c>nn.GRU</c>: gates r, z, n.</summary>
    Gru = 3,

    /// <summary><c>nn.LSTM</c>: gates i, f, g, o and a cell state c.</summary>
    Lstm = 4,
}

/// <summary>Sizes that follow from a cell's kind (docs/notes cells-api contract).</summary>
public static class CellShapes
{
    /// <summary>g: 1, 3 or 4.</summary>
    public static int Gates(CellKind cell) => cell switch
    {
        CellKind.Elman => 1,
        CellKind.Gru => 3,
        CellKind.Lstm => 4,
        _ => throw new ArgumentOutOfRangeException(nameof(cell), cell, "unknown cell"),
    };

    /// <summary>Columns per position the forward saves for the backward: 0 (Elman), 4H (GRU r, z, n, hn; LSTM i, f, g, o).</summary>
    public static int SavedWidth(CellKind cell, int hidden) => cell switch
    {
        CellKind.Elman => 0,
        CellKind.Gru or CellKind.Lstm => 4 * hidden,
        _ => throw new ArgumentOutOfRangeException(nameof(cell), cell, "unknown cell"),
    };

    /// <summary>True for a cell with a cell state c besides h (LSTM).</summary>
    public static bool HasCellState(CellKind cell) => Gates(cell) == 4;

    /// <summary>Columns of the hoisted input term that b_hh is folded into: all G, but GRU's b_hn (2H).</summary>
    public static int FoldedHhColumns(CellKind cell, int hidden) => cell == CellKind.Gru ? 2 * hidden : Gates(cell) * hidden;
}
