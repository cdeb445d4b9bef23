"""Loads a GpuRnn checkpoint into torch.nn.RNN, nn.GRU or nn.LSTM (the cell read off the shapes: rows of
weight_hh_l0 / its columns = 1, 3 or 4) + nn.Linear and prints the logits of a token sequence.

Usage: python3 torch_logits.py CHECKPOINT ID ID ...   ->  JSON [[logit, ...] per step]
The safetensors file is parsed from its format description (8-byte little-endian header length,
JSON header, raw little-endian F32 data), so neither gpurnn nor the safetensors package is used.
"""
import json
import struct
import sys

import torch


def load(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        values = struct.unpack(f"<{(end - begin) // 4}f", data[begin:end])
        tensors[name] = torch.tensor(values, dtype=torch.float32).reshape(entry["shape"])
    return tensors, header.get("__metadata__", {})


def main():
    tensors, _ = load(sys.argv[1])
    ids = [int(x) for x in sys.argv[2:]]
    rows, hidden = tensors["rnn.weight_hh_l0"].shape
    vocab = tensors["rnn.weight_ih_l0"].shape[1]
    layers = sum(1 for k in tensors if k.startswith("rnn.weight_hh_l"))
    gates = rows // hidden
    if gates == 3:
        rnn = torch.nn.GRU(vocab, hidden, num_layers=layers)
    elif gates == 4:
        rnn = torch.nn.LSTM(vocab, hidden, num_layers=layers)
    else:
        rnn = torch.nn.RNN(vocab, hidden, num_layers=layers, nonlinearity="tanh")
    decoder = torch.nn.Linear(hidden, vocab)
    rnn.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("rnn.")})
    decoder.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("decoder.")})
    x = torch.nn.functional.one_hot(torch.tensor(ids), vocab).float().unsqueeze(1)  # [T, 1, V]
    with torch.no_grad():
        out, _ = rnn(x)
        logits = decoder(out.squeeze(1))
    print(json.dumps(logits.tolist()))


if __name__ == "__main__":
    main()
