"""Replays `gpurnn train --init INIT` in PyTorch and compares the weights it reaches with GpuRnn's.

Usage: python3 torch_train.py INIT TRAINED IDS_JSON --batch B --seq-len T --steps N --optimizer adam|sgd
                              --lr LR --clip-norm C        ->  JSON {"maxAbsDiff": ..., "tensors": {...}}
The model is torch.nn.RNN / nn.GRU / nn.LSTM (the cell read off weight_hh_l0: rows / columns = 1, 3, 4) on
one-hot input + nn.Linear, mean cross-entropy, clip_grad_norm_ then the optimizer (torch defaults), stream
batching of DESIGN.md §6 (PyTorch's word_language_model: n = len // B, windows of min(T, n − 1 − i) steps, the
state carried with .detach() and reset to zero at each epoch). Runs on the CPU in float32.
"""
import argparse
import json
import sys

import torch

from torch_logits import load


def main():
    p = argparse.ArgumentParser()
    p.add_argument("init")
    p.add_argument("trained")
    p.add_argument("ids")
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--seq-len", type=int, required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--optimizer", choices=["adam", "sgd"], required=True)
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--clip-norm", type=float, default=0.0)
    a = p.parse_args()
    torch.use_deterministic_algorithms(True)
    init, _ = load(a.init)
    trained, _ = load(a.trained)
    ids = json.load(open(a.ids))

    rows, hidden = init["rnn.weight_hh_l0"].shape
    vocab = init["rnn.weight_ih_l0"].shape[1]
    layers = sum(1 for k in init if k.startswith("rnn.weight_hh_l"))
    gates = rows // hidden
    cls = {1: lambda: torch.nn.RNN(vocab, hidden, num_layers=layers, nonlinearity="tanh"),
           3: lambda: torch.nn.GRU(vocab, hidden, num_layers=layers),
           4: lambda: torch.nn.LSTM(vocab, hidden, num_layers=layers)}[gates]
    rnn = cls()
    decoder = torch.nn.Linear(hidden, vocab)
    rnn.load_state_dict({k[4:]: v for k, v in init.items() if k.startswith("rnn.")})
    decoder.load_state_dict({k[8:]: v for k, v in init.items() if k.startswith("decoder.")})
    params = list(rnn.parameters()) + list(decoder.parameters())
    opt = torch.optim.Adam(params, lr=a.lr) if a.optimizer == "adam" else torch.optim.SGD(params, lr=a.lr)

    B, T = a.batch, a.seq_len
    n = len(ids) // B
    data = torch.tensor(ids[:n * B]).view(B, n).t().contiguous()  # [n, B]: stream b is ids[b·n : (b+1)·n]
    starts = list(range(0, n - 1, T))

    def zero():
        h = torch.zeros(layers, B, hidden)
        return (h, torch.zeros(layers, B, hidden)) if gates == 4 else h

    state = zero()
    for step in range(a.steps):
        w = step % len(starts)
        if w == 0:
            state = zero()
        i = starts[w]
        s = min(T, n - 1 - i)
        x = torch.nn.functional.one_hot(data[i:i + s], vocab).float()  # [s, B, V]
        y = data[i + 1:i + 1 + s]
        state = tuple(t.detach() for t in state) if gates == 4 else state.detach()
        opt.zero_grad()
        out, state = rnn(x, state)
        loss = torch.nn.functional.cross_entropy(decoder(out).reshape(-1, vocab), y.reshape(-1))
        loss.backward()
        if a.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, a.clip_norm)
        opt.step()

    ours = {k: v for k, v in trained.items() if k.startswith("rnn.") or k.startswith("decoder.")}
    theirs = {**{"rnn." + k: v for k, v in rnn.state_dict().items()}, **{"decoder." + k: v for k, v in decoder.state_dict().items()}}
    diffs = {k: float((ours[k] - theirs[k]).abs().max()) for k in ours}
    print(json.dumps({"cell": {1: "rnn", 3: "gru", 4: "lstm"}[gates], "steps": a.steps, "optimizer": a.optimizer,
                      "maxAbsDiff": max(diffs.values()), "maxAbsWeight": max(float(v.abs().max()) for v in theirs.values()),
                      "tensors": diffs}))


if __name__ == "__main__":
    sys.exit(main())
