"""Train and export the recurrent fixtures of tests/models/recurrent (issue 13).

A synthetic labelled task, fixed seeds: each sample is T = 20 steps of 8 features, a sinusoid of
one of 4 frequencies (1, 1.5, 2, 2.5 cycles per 20 steps, random phase and amplitude 0.6..1.4)
projected onto the 8 features by a fixed random mixing, plus N(0, 1) noise; the label is the
frequency index. Four classifiers (the last step's output -> Linear(16, 4)) are trained briefly
with Adam and exported with both torch exporters (TorchScript opset 17, dynamo opset 18):

  lstm          nn.LSTM(8, 16, batch_first=True)          (output[:, -1])
  gru           nn.GRU(8, 16) on x.transpose(0, 1)        (layout [T, N, I]; output[-1])
  lstm_stacked  nn.LSTM(8, 16, num_layers=2) on x.transpose(0, 1)   (h_n[-1])
  gru_stacked   nn.GRU(8, 16, num_layers=2, batch_first=True)       (h_n[-1])
  lstm_bidir    nn.LSTM(8, 16, bidirectional=True) on x.transpose(0, 1)   (output[-1] ->
                Linear(32, 4): the forward's last step and the backward's first)

Every model takes "input" [N, 20, 8] and gives "output" [N, 4] logits. data.npz: "calib"
[64, 20, 8], "test" [400, 20, 8] and "test_labels" [400] (held out: not trained on), "train"
accuracy is not stored. Run: python tools/export_recurrent_fixtures.py [--only NAME ..]
(torch, onnxscript); it prints each model's torch test accuracy and checks onnxruntime against
torch (max abs difference < 1e-4).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

OUT = Path(__file__).resolve().parent.parent / "tests" / "models" / "recurrent"
T, F, H, CLASSES = 20, 8, 16, 4
FREQS = (1.0, 1.5, 2.0, 2.5)


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(1313).normal(0, 1, (2, F)) / np.sqrt(2)
    y = rng.integers(0, CLASSES, n)
    t = np.arange(T)[None, :]
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    amp = rng.uniform(0.6, 1.4, (n, 1))
    w = 2 * np.pi * np.asarray(FREQS)[y][:, None] / T
    s = np.stack([amp * np.sin(w * t + phase), amp * np.cos(w * t + phase)], axis=-1)
    x = s @ mix + rng.normal(0, 1.0, (n, T, F))
    return x.astype(np.float32), y.astype(np.int64)


class Net(nn.Module):
    def __init__(self, cell: str, layers: int, batch_first: bool, use_hn: bool,
                 bidirectional: bool = False):
        super().__init__()
        kind = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = kind(F, H, num_layers=layers, batch_first=batch_first,
                        bidirectional=bidirectional)
        self.fc = nn.Linear(2 * H if bidirectional else H, CLASSES)
        self.batch_first, self.use_hn, self.cell = batch_first, use_hn, cell

    def forward(self, x):  # x [N, T, F]
        if not self.batch_first:
            x = x.transpose(0, 1)
        y, state = self.rnn(x)
        if self.use_hn:
            h = (state[0] if self.cell == "lstm" else state)[-1]
        else:
            h = y[:, -1] if self.batch_first else y[-1]
        return self.fc(h)


MODELS = {
    "lstm": ("lstm", 1, True, False),
    "gru": ("gru", 1, False, False),
    "lstm_stacked": ("lstm", 2, False, True),
    "gru_stacked": ("gru", 2, True, True),
    "lstm_bidir": ("lstm", 1, False, False, True),
}


def train(net: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int = 12) -> None:
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    g = torch.Generator().manual_seed(7)
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", choices=sorted(MODELS), default=sorted(MODELS),
                    help="models to (re)train and export; each has its own seed, so a partial "
                    "run gives the same files as a full one")
    only = set(ap.parse_args().only)
    OUT.mkdir(parents=True, exist_ok=True)
    xtr, ytr = make_data(2000, 0)
    xte, yte = make_data(400, 1)
    xca, _ = make_data(64, 2)
    np.savez_compressed(OUT / "data.npz", calib=xca, test=xte, test_labels=yte)
    for k, (name, spec) in enumerate(MODELS.items()):
        if name not in only:
            continue
        torch.manual_seed(130 + k)
        net = Net(*spec)
        train(net, xtr, ytr)
        net.eval()
        with torch.no_grad():
            ref = net(torch.from_numpy(xte)).numpy()
        acc = float(np.mean(ref.argmax(1) == yte))
        for exporter in ("torchscript", "dynamo"):
            path = OUT / f"{name}.{exporter}.onnx"
            torch.onnx.export(net, (torch.from_numpy(xte[:1]),), str(path),
                              dynamo=exporter == "dynamo",
                              opset_version=17 if exporter == "torchscript" else 18,
                              input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "N"}, "output": {0: "N"}}
                              if exporter == "torchscript" else None,
                              external_data=False)
            sess = ort.InferenceSession(str(path))
            got = np.concatenate([sess.run(None, {"input": xte[i:i + 1]})[0]
                                  for i in range(len(xte))])
            diff = float(np.abs(got - ref).max())
            assert diff < 1e-4, (path, diff)
            print(path.name, f"onnxruntime vs torch max abs diff {diff:.2e}")
        print(name, f"float test accuracy {acc:.4f}")


if __name__ == "__main__":
    main()
