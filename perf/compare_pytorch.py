#!/usr/bin/env python3
"""Train GpuRnn's benchmark model the way a PyTorch user writes it, and time it.

Model: nn.Embedding(V, H) -> nn.RNN(H, H, num_layers=L, nonlinearity='tanh') (or nn.GRU / nn.LSTM with
--cell gru|lstm, as `gpurnn-perf --cell`) -> nn.Linear(H, V),
mean cross-entropy, Adam (lr 1e-3), clip_grad_norm_(5), truncated BPTT windows of T steps over
random token ids batched like PyTorch's word_language_model, hidden state carried with .detach().
Same sizes, steps and warmup as `gpurnn-perf`, so the two tokens/s numbers compare directly.

Note the one difference in the model: GpuRnn gathers columns of W_ih [H, V] (one-hot input), while
the PyTorch user's nn.Embedding + nn.RNN(H, H) does the gather and then one more [T*B, H] x [H, H]
GEMM (hoisted by cuDNN out of the time loop). That is how the model is written in PyTorch, so it is
what we compare against.

Usage:
  python3 perf/compare_pytorch.py --cell rnn --hidden 128 --layers 1 --vocab 65 --batch 64 --seq-len 100 \
      --steps 20 --warmup 3 --device cuda --tf32 off --json [--ours ours.json]

Output (--json): one JSON line. With --ours FILE (a JSON line written by `gpurnn-perf --json`) the
line also holds `ours` and `ratioOursOverPytorch` (ours tokens/s divided by PyTorch tokens/s);
the ratio is printed to stderr as well.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cell", choices=["rnn", "gru", "lstm"], default="rnn",
                   help="nn.RNN (tanh), nn.GRU or nn.LSTM, as gpurnn-perf --cell")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--vocab", type=int, default=65)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    p.add_argument("--tf32", choices=["off", "on"], default="off",
                   help="allow TF32 in matmuls and cuDNN (CUDA only; PyTorch's own default is "
                        "matmul off, cuDNN on)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads on CPU (0: torch default)")
    p.add_argument("--json", action="store_true", help="print one JSON line instead of text")
    p.add_argument("--ours", metavar="FILE", help="JSON line from gpurnn-perf --json, for the ratio")
    a = p.parse_args(argv)
    for name in ("hidden", "layers", "vocab", "batch", "seq_len", "steps"):
        if getattr(a, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be a positive integer")
    if a.warmup < 0:
        p.error("--warmup must be >= 0")
    return a


def has_attr(obj, name):
    """hasattr that also survives torch's backend modules, which raise AssertionError for unknown names."""
    try:
        getattr(obj, name)
        return True
    except Exception:
        return False


def set_tf32(torch, on):
    """Set TF32 for matmuls (cuBLAS) and cuDNN (convolutions and RNNs) and report what is in effect.

    torch >= 2.9 has the per-backend `fp32_precision` API and raises if it is mixed with the legacy
    `allow_tf32` flags, so use the new API alone where it exists and the legacy flags otherwise."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if has_attr(matmul, "fp32_precision") and has_attr(cudnn, "fp32_precision"):
            value = "tf32" if on else "ieee"
            targets = [matmul, cudnn] + [getattr(cudnn, sub) for sub in ("conv", "rnn") if has_attr(cudnn, sub)]
            if has_attr(torch.backends, "fp32_precision"):
                torch.backends.fp32_precision = value
            for t in targets:
                t.fp32_precision = value
            eff = {"tf32Api": "fp32_precision", "matmulFp32Precision": matmul.fp32_precision,
                   "cudnnFp32Precision": cudnn.fp32_precision}
            if has_attr(cudnn, "rnn"):
                eff["cudnnRnnFp32Precision"] = cudnn.rnn.fp32_precision
            return eff
        matmul.allow_tf32 = on
        cudnn.allow_tf32 = on
        return {"tf32Api": "allow_tf32", "matmulAllowTf32": bool(matmul.allow_tf32),
                "cudnnAllowTf32": bool(cudnn.allow_tf32)}


def cudnn_rnn_algo(torch, cell, hidden, layers, batch, dtype_is_half=False):
    """Which cuDNN RNN algorithm PyTorch picks for this RNN, by the rule in torch's
    aten/src/ATen/native/cudnn/RNN.cpp (get_algo, use_rnn_persist_small_h,
    use_persist_common_heuristics, use_persist_device_heuristics), for unpacked input:

      * cuDNN >= 8.2.1, not double, compute capability major >= 6:
          RNN_TANH/RNN_RELU forward  -> CUDNN_RNN_ALGO_PERSIST_STATIC_SMALL_H if H <= 384
          RNN_TANH/RNN_RELU backward -> CUDNN_RNN_ALGO_PERSIST_STATIC_SMALL_H if H <= 256
          GRU/LSTM forward           -> CUDNN_RNN_ALGO_PERSIST_STATIC_SMALL_H if H <= 192
          GRU/LSTM backward          -> CUDNN_RNN_ALGO_PERSIST_STATIC_SMALL_H if H <= 128
      * otherwise, only for fp16 input: CUDNN_RNN_ALGO_PERSIST_STATIC when
          L == 1, H <= 1024, H % 128 == 0, input size % 128 == 0, unidirectional (common), never GRU, and
          (device) sm_70: batch % 16 == 0 (not 80/112) or 8, with T/batch limits; sm_8x/9x with
          >= 98 SMs and not sm_86: batch % 8 == 0, batch <= 128, (batch < 96 or H < 896)
      * else CUDNN_RNN_ALGO_STANDARD.

    For our fp32 tanh model that means: persistent-small-H forward and backward at H <= 256,
    persistent forward only at 256 < H <= 384, standard above 384. The rule does not depend on
    the batch for fp32, nor on TF32. The per-layer choice is the same for every layer (L does not
    enter the small-H rule). `observedKernels` (filled by the caller from a profiled step) shows
    what actually ran.
    """
    info = {"source": "torch aten/src/ATen/native/cudnn/RNN.cpp get_algo (rule as of torch 2.x)"}
    cudnn_ver = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    major, minor = torch.cuda.get_device_capability()
    props = torch.cuda.get_device_properties(0)
    sms = getattr(props, "multi_processor_count", None)
    info.update({"cudnnVersion": cudnn_ver, "computeCapability": f"{major}.{minor}", "smCount": sms})
    small_h_ok = cudnn_ver is not None and cudnn_ver >= 8201 and major >= 6

    def pick(forward):
        if cell == "rnn":
            limit = 384 if forward else 256
        else:
            limit = 192 if forward else 128
        if small_h_ok and hidden <= limit:
            return "CUDNN_RNN_ALGO_PERSIST_STATIC_SMALL_H", f"fp32 {cell}, H={hidden} <= {limit} (small-H rule, {'forward' if forward else 'backward'})"
        if dtype_is_half and cell != "gru":
            common = layers == 1 and hidden <= 1024 and hidden % 128 == 0
            device = major >= 8 and (sms or 0) >= 98 and minor != 6 and batch % 8 == 0 and batch <= 128 \
                and (batch < 96 or hidden < 896)
            if common and device:
                return "CUDNN_RNN_ALGO_PERSIST_STATIC", "fp16 persistent heuristics"
        why = f"fp32 {cell}, H={hidden} > {limit}" if small_h_ok else "small-H rule needs cuDNN >= 8.2.1 and sm >= 6.0"
        return "CUDNN_RNN_ALGO_STANDARD", why + "; PERSIST_STATIC is only chosen for fp16"

    info["forward"], info["forwardReason"] = pick(True)
    info["backward"], info["backwardReason"] = pick(False)
    return info


def profile_rnn_kernels(torch, step_fn):
    """GPU kernels of one profiled training step: those that look like cuDNN RNN kernels, and the
    ten that took the most device time (name, count, microseconds)."""
    try:
        from torch.profiler import profile, ProfilerActivity
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            step_fn(False)
            torch.cuda.synchronize()
        events = list(prof.key_averages())

        def dev_us(e):
            for attr in ("device_time_total", "cuda_time_total", "self_device_time_total", "self_cuda_time_total"):
                v = getattr(e, attr, None)
                if v:
                    return float(v)
            return 0.0

        rnn = sorted({e.key[:160] for e in events if "rnn" in e.key.lower() or "persist" in e.key.lower()})
        top = sorted(events, key=dev_us, reverse=True)[:10]
        return rnn, [{"name": e.key[:160], "count": e.count, "us": round(dev_us(e), 1)} for e in top]
    except Exception as e:  # profiling is a bonus, never a failure
        return [f"profiling failed: {type(e).__name__}: {e}"[:300]], []


def cpu_name():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} logical CPUs)"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def read_ours(path):
    with open(path, encoding="utf-8") as f:
        lines = [l.strip() for l in f if l.strip()]
    for line in reversed(lines):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and "tokensPerSecond" in obj:
            return obj
    raise ValueError(f"{path}: no JSON line with tokensPerSecond")


def main(argv=None):
    a = parse_args(argv)
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    if a.device == "cuda" and not torch.cuda.is_available():
        print("compare_pytorch: --device cuda but torch.cuda.is_available() is False", file=sys.stderr)
        return 1
    if a.device == "cpu" and a.threads > 0:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    tf32 = set_tf32(torch, a.tf32 == "on") if a.device == "cuda" else {"tf32Api": None}

    torch.manual_seed(1)
    H, L, V, B, T = a.hidden, a.layers, a.vocab, a.batch, a.seq_len

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(V, H)
            if a.cell == "gru":
                self.rnn = nn.GRU(H, H, num_layers=L)
            elif a.cell == "lstm":
                self.rnn = nn.LSTM(H, H, num_layers=L)
            else:
                self.rnn = nn.RNN(H, H, num_layers=L, nonlinearity="tanh")
            self.decoder = nn.Linear(H, V)

        def forward(self, x, h):          # x: [T, B] token ids; h: [L, B, H] (an LSTM's: the pair (h, c))
            out, h = self.rnn(self.embed(x), h)   # out: [T, B, H]
            return self.decoder(out), h           # [T, B, V]

    model = Model().to(dev)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    # Random token stream batched like word_language_model: data [n, B], window i -> [i:i+T], targets [i+1:i+1+T].
    total = a.warmup + a.steps + 1          # +1: one window for the profiled step on CUDA
    g = torch.Generator().manual_seed(1)
    n = T * total + 1
    data = torch.randint(0, V, (n, B), generator=g, dtype=torch.long).to(dev)   # whole data on the device
    hidden = torch.zeros(L, B, H, device=dev)
    if a.cell == "lstm":
        hidden = (hidden, torch.zeros(L, B, H, device=dev))
    window = [0]

    def step(read_loss):
        nonlocal hidden
        i = window[0] * T
        window[0] += 1
        x, y = data[i:i + T], data[i + 1:i + 1 + T]
        hidden = tuple(t.detach() for t in hidden) if isinstance(hidden, tuple) else hidden.detach()
        opt.zero_grad(set_to_none=True)
        logits, hidden = model(x, hidden)
        loss = F.cross_entropy(logits.view(-1, V), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        return loss.item() if read_loss else None

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(a.warmup):
        step(False)
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    loss = float("nan")
    for k in range(a.steps):
        last = k == a.steps - 1
        sync()
        t0 = time.perf_counter()
        r = step(last)                     # .item() on the last step only, like gpurnn-perf
        sync()
        times.append((time.perf_counter() - t0) * 1000.0)
        if last:
            loss = r
    times_sorted = sorted(times)
    median = times_sorted[a.steps // 2]    # same definition as gpurnn-perf (upper median)
    result = {
        "tool": "pytorch",
        "device": a.device,
        "deviceName": torch.cuda.get_device_name(0) if dev.type == "cuda" else cpu_name(),
        "torchVersion": torch.__version__,
        "cudaVersion": torch.version.cuda,
        "cudnnVersion": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "tf32": a.tf32 if a.device == "cuda" else "n/a (cpu)",
        **tf32,
        "threads": torch.get_num_threads(),
        "cell": a.cell, "hidden": H, "layers": L, "vocab": V, "batch": B, "seqLen": T,
        "steps": a.steps, "warmup": a.warmup, "optimizer": "adam",
        "medianMsPerStep": median,
        "minMsPerStep": times_sorted[0],
        "meanMsPerStep": statistics.fmean(times),
        "tokensPerSecond": B * T / (median / 1000.0),
        "lastLoss": loss,
        "python": platform.python_version(),
    }
    if dev.type == "cuda":
        result["peakMemoryBytes"] = torch.cuda.max_memory_allocated()
        algo = cudnn_rnn_algo(torch, a.cell, H, L, B)
        algo["observedKernels"], algo["topKernels"] = profile_rnn_kernels(torch, step)
        result["cudnn_algo"] = algo
    else:
        result["cudnn_algo"] = None

    ratio_line = None
    if a.ours:
        try:
            ours = read_ours(a.ours)
            result["ours"] = ours
            keys = [("cell", a.cell), ("hidden", H), ("layers", L), ("vocab", V), ("batch", B), ("seqLen", T)]
            mismatch = [f"{k}: ours {ours.get(k)} vs {v}" for k, v in keys if ours.get(k) != v]
            result["oursConfigMatches"] = not mismatch
            if mismatch:
                result["oursConfigMismatch"] = mismatch
            ratio = ours["tokensPerSecond"] / result["tokensPerSecond"]
            result["ratioOursOverPytorch"] = ratio
            ratio_line = (f"ratio ours/pytorch tokens/s = {ratio:.3f} "
                          f"(ours {ours['tokensPerSecond']:.0f} on {ours.get('kind')} {ours.get('device')}, "
                          f"pytorch {result['tokensPerSecond']:.0f} on {result['deviceName']}, tf32 {result['tf32']})"
                          + ("" if not mismatch else "  WARNING config mismatch: " + "; ".join(mismatch)))
        except Exception as e:
            result["oursError"] = f"{type(e).__name__}: {e}"
            ratio_line = "ratio: not computed (" + result["oursError"] + ")"

    if a.json:
        print(json.dumps(result))
        if ratio_line:
            print(ratio_line, file=sys.stderr)
    else:
        print(f"pytorch {torch.__version__} {a.device} {result['deviceName']}: {a.cell} H={H} L={L} V={V} B={B} T={T} adam, tf32 {result['tf32']}")
        print(f"  {median:.2f} ms/step median, {times_sorted[0]:.2f} min; {result['tokensPerSecond']:.0f} tokens/s; last loss {loss:.4f}")
        if result["cudnn_algo"]:
            c = result["cudnn_algo"]
            print(f"  cuDNN {result['cudnnVersion']}: forward {c['forward']}, backward {c['backward']}")
            print(f"  observed RNN kernels: {', '.join(c['observedKernels']) or '(none matched)'}")
        if ratio_line:
            print("  " + ratio_line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
