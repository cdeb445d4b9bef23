namespace GpuRnn.Tests.Reference;

/// <summary>Plain double-precision building blocks for checking single kernels.</summary>
public static class RefOps
{
    /// <summary>
    /// Returns alpha * op(A) * op(B) + beta * C as a NEW [M, N] array; <paramref name="c"/> is only read.
    /// A is stored [M, K] (or [K, M] when transA), B is [K, N] (or [N, K] when transB), all row-major.
    /// As in BLAS, beta == 0 means C is not read at all (so NaN or garbage in C cannot leak through).
    /// </summary>
    public static double[] Gemm(int m, int n, int k, bool transA, bool transB, double alpha, double[] a, double[] b, double beta, double[] c)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (a.Length < m * k) throw new ArgumentException($"A needs {m * k} values", nameof(a));
        if (b.Length < k * n) throw new ArgumentException($"B needs {k * n} values", nameof(b));
        if (beta != 0.0 && (c == null || c.Length < m * n)) throw new ArgumentException($"C needs {m * n} values", nameof(c));

        double[] result = new double[m * n]; // [M, N]
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double sum = 0;
                for (int p = 0; p < k; p++)
                {
                    double aip = transA ? a[p * m + i] : a[i * k + p]; // A^T stored [K, M]
                    double bpj = transB ? b[j * k + p] : b[p * n + j]; // B^T stored [N, K]
                    sum += aip * bpj;
                }
                result[i * n + j] = alpha * sum + (beta != 0.0 ? beta * c![i * n + j] : 0.0);
            }
        }
        return result;
    }

    /// <summary>
    /// A strided batched GEMM written from its definition: for z &lt; batch, C_z = α·op(A_z)·op(B_z) + β·C_z with
    /// X_z[r, c] stored at z·strideX + r·ldX + c (op as in <see cref="Gemm"/>). Returns a copy of <paramref name="c"/>
    /// with the products' elements replaced; the elements no product covers keep their value.
    /// </summary>
    public static double[] GemmBatched(int m, int n, int k, bool transA, bool transB, double alpha, double[] a, double[] b, double beta, double[] c,
        int batch, (int Lda, int Ldb, int Ldc) ld, (long A, long B, long C) stride)
    {
        var result = (double[])c.Clone();
        for (int z = 0; z < batch; z++)
        {
            for (int i = 0; i < m; i++)
            {
                for (int j = 0; j < n; j++)
                {
                    double sum = 0;
                    for (int p = 0; p < k; p++)
                    {
                        double aip = transA ? a[z * stride.A + p * ld.Lda + i] : a[z * stride.A + i * ld.Lda + p];
                        double bpj = transB ? b[z * stride.B + j * ld.Ldb + p] : b[z * stride.B + p * ld.Ldb + j];
                        sum += aip * bpj;
                    }
                    long at = z * stride.C + i * ld.Ldc + j;
                    result[at] = alpha * sum + (beta != 0.0 ? beta * c[at] : 0.0);
                }
            }
        }
        return result;
    }

    /// <summary>
    /// Attention weights: row r = t·B + b of scores [R, S] softmaxed over its first lengths[r mod B] columns, the
    /// rest 0 (their scores are never read).
    /// </summary>
    public static double[] MaskedSoftmax(double[] scores, int rows, int batch, int columns, int[] lengths)
    {
        var a = new double[rows * columns];
        for (int r = 0; r < rows; r++)
        {
            int n = lengths[r % batch];
            double max = double.NegativeInfinity;
            for (int j = 0; j < n; j++)
                max = Math.Max(max, scores[r * columns + j]);
            double sum = 0;
            for (int j = 0; j < n; j++)
                sum += Math.Exp(scores[r * columns + j] - max);
            for (int j = 0; j < n; j++)
                a[r * columns + j] = Math.Exp(scores[r * columns + j] - max) / sum;
        }
        return a;
    }

    /// <summary>Its gradient: ds[r, j] = a[r, j]·(da[r, j] − Σ_k a[r, k]·da[r, k]) over the true positions, 0 elsewhere.</summary>
    public static double[] MaskedSoftmaxBackward(double[] a, double[] da, int rows, int batch, int columns, int[] lengths)
    {
        var ds = new double[rows * columns];
        for (int r = 0; r < rows; r++)
        {
            int n = lengths[r % batch];
            double dot = 0;
            for (int j = 0; j < n; j++)
                dot += a[r * columns + j] * da[r * columns + j];
            for (int j = 0; j < n; j++)
                ds[r * columns + j] = a[r * columns + j] * (da[r * columns + j] - dot);
        }
        return ds;
    }

    /// <summary>
    /// Softmax cross-entropy per row. logits [R, V], targets [R] (a target &lt; 0 is ignored).
    /// RowLoss [R]: -log softmax(logits_r)[target_r], 0 for ignored rows.
    /// DLogits [R, V]: (softmax - onehot(target)) * scale, all zeros for ignored rows.
    /// Computed with the row maximum subtracted, so logits around 1000 do not overflow.
    /// </summary>
    public static (double[] RowLoss, double[] DLogits) SoftmaxCrossEntropy(double[] logits, int rows, int vocab, int[] targets, double scale)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(targets);
        if (logits.Length < rows * vocab) throw new ArgumentException($"logits need {rows * vocab} values", nameof(logits));
        if (targets.Length < rows) throw new ArgumentException($"targets need {rows} values", nameof(targets));

        double[] rowLoss = new double[rows];          // [R]
        double[] dLogits = new double[rows * vocab];  // [R, V]
        for (int r = 0; r < rows; r++)
        {
            int y = targets[r];
            if (y < 0) continue; // ignored: no loss, no gradient
            if (y >= vocab) throw new ArgumentOutOfRangeException(nameof(targets), $"target {y} >= V = {vocab}");

            int off = r * vocab;
            double max = double.NegativeInfinity;
            for (int v = 0; v < vocab; v++) max = Math.Max(max, logits[off + v]);
            double sumExp = 0;
            for (int v = 0; v < vocab; v++) sumExp += Math.Exp(logits[off + v] - max);
            double logSumExp = max + Math.Log(sumExp);

            rowLoss[r] = logSumExp - logits[off + y];
            for (int v = 0; v < vocab; v++)
            {
                double p = Math.Exp(logits[off + v] - logSumExp);
                dLogits[off + v] = (p - (v == y ? 1.0 : 0.0)) * scale;
            }
        }
        return (rowLoss, dLogits);
    }

    /// <summary>Sum over rows: x [rows, cols] to [cols] (what a bias gradient is).</summary>
    public static double[] ColumnSums(double[] x, int rows, int cols)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.Length < rows * cols) throw new ArgumentException($"x needs {rows * cols} values", nameof(x));
        double[] sums = new double[cols]; // [cols]
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                sums[c] += x[r * cols + c];
        return sums;
    }

    /// <summary>
    /// The dropout factor of element <paramref name="index"/> of a block with key <paramref name="key"/>: 1/(1 − p) when
    /// kept, 0 when dropped. Kept iff the top 24 bits of SplitMix64's finaliser of key + index·0x9E3779B97F4A7C15 are at
    /// least round(p·2²⁴), written here from the definition (Steele, Lea and Flood 2014), not from the engine's code.
    /// </summary>
    public static double DropoutFactor(ulong key, long index, double p)
    {
        ulong z = unchecked(key + (ulong)index * 0x9E3779B97F4A7C15UL);
        z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
        z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
        z ^= z >> 31;
        ulong top24 = z >> 40;
        return top24 >= (ulong)Math.Round(p * (1 << 24)) ? 1.0 / (1.0 - p) : 0.0;
    }
}
