"""A causal convolution front-end, streamed: speakers identified while they speak, many at once.

Data: JapaneseVowels, from the UEA multivariate time series classification archive as
shipped in the PyPI package ``sktime`` (``sktime/datasets/data/JapaneseVowels``,
BSD-3-Clause; originally Kudo, Toyama and Shimbo, UCI). Nine male speakers utter the
vowels /ae/; each utterance is 7 to 29 frames of 12 LPC cepstrum coefficients. The
archive's own split is kept: 270 utterances train, 370 are held out.

The model is written the way papers write an audio front-end, with no streaming code in
it: two causal ``nn.Conv1d`` layers (kernel 3, dilation 1 then 2, left-padded with
``F.pad``) feed a GRU whose per-frame logits are a running speaker prediction.
``edgeseq.exporters.export`` makes it a streaming model unchanged: each convolution
keeps a cache of its last input frames as one more state pair in the contract, next to
the GRU's ``h`` (the explain table below shows how each layer is streamed).

All held-out utterances then arrive at once, each at its own pace (a Poisson number of
frames per tick, often 0), and are served by one ``StreamPool``: one batched onnxruntime
call per tick, caches and hidden states carried per stream. Checks: every stream's
outputs equal a solo ``StreamingPredictor`` fed the whole utterance, and the ONNX logits
equal PyTorch's. The table reports the speaker accuracy at the end of each utterance and
after part of it, beside the same GRU trained without the front-end (evaluated in
PyTorch), so the front-end's worth is measured, not assumed.

Run: ``python examples/09_conv_front_end.py`` (``--quick`` for a few-second smoke run).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import start


def load_vowels() -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray], np.ndarray]:
    """(train utterances, labels, held-out utterances, labels); each utterance (T, 12)."""
    from sktime.datasets import load_japanese_vowels

    def split(name: str) -> tuple[list[np.ndarray], np.ndarray]:
        frame, labels = load_japanese_vowels(split=name, return_X_y=True)
        utts = [
            np.stack([np.asarray(frame.iloc[i, c], np.float32) for c in range(frame.shape[1])], 1)
            for i in range(len(frame))
        ]
        return utts, np.asarray(labels).astype(int) - 1  # speakers 1..9 -> 0..8

    train, y_train = split("train")
    test, y_test = split("test")
    return train, y_train, test, y_test


def build_model(front: bool, hidden: int):
    """Causal conv front-end (optional) -> GRU -> per-frame speaker logits."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class CausalConv1d(nn.Module):
        """Conv1d over (batch, channels, time) that sees only the past: left padding."""

        def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int) -> None:
            super().__init__()
            self.left = (kernel - 1) * dilation
            self.conv = nn.Conv1d(c_in, c_out, kernel, dilation=dilation)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(F.pad(x, (self.left, 0)))

    class SpeakerNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            width = 24 if front else 12
            self.front = (
                nn.Sequential(
                    CausalConv1d(12, width, 3, 1), nn.ReLU(), CausalConv1d(width, width, 3, 2)
                )
                if front
                else None
            )
            self.gru = nn.GRU(width, hidden, batch_first=True)
            self.head = nn.Linear(hidden, 9)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, time, 12)
            if self.front is not None:
                x = torch.relu(self.front(x.transpose(1, 2))).transpose(1, 2)
            y, _ = self.gru(x)
            return self.head(y)  # (batch, time, 9): the running prediction

    return SpeakerNet()


def pad(utts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Utterances zero-padded after their end: (N, T_max, 12) and lengths (N,)."""
    lengths = np.array([len(u) for u in utts])
    out = np.zeros((len(utts), lengths.max(), 12), np.float32)
    for i, u in enumerate(utts):
        out[i, : len(u)] = u
    return out, lengths


def train(run, model, X: np.ndarray, lengths: np.ndarray, y: np.ndarray, epochs: int) -> float:
    """Cross-entropy at every valid frame plus the last one; causal, so padding is harmless."""
    import time

    import torch

    torch.manual_seed(run.seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xs, ys = torch.from_numpy(X), torch.from_numpy(y)
    valid = torch.arange(X.shape[1])[None] < torch.from_numpy(lengths)[:, None]  # (N, T)
    last = torch.from_numpy(lengths - 1)
    g = torch.Generator().manual_seed(run.seed)
    t0 = time.perf_counter()
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xs), generator=g).split(32):
            logits = model(xs[idx])  # (b, T, 9)
            per_frame = torch.nn.functional.cross_entropy(
                logits.transpose(1, 2), ys[idx, None].expand(-1, X.shape[1]), reduction="none"
            )
            at_end = per_frame[torch.arange(len(idx)), last[idx]]
            loss = at_end.mean() + 0.5 * per_frame[valid[idx]].mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
    model.eval()
    return time.perf_counter() - t0


def running_accuracy(logits: list[np.ndarray], y: np.ndarray, fractions) -> list[float]:
    """Accuracy of the prediction after each fraction of every utterance (at least 1 frame)."""
    out = []
    for f in fractions:
        hits = [lg[max(1, int(np.ceil(f * len(lg)))) - 1].argmax() == t for lg, t in zip(logits, y)]
        out.append(float(np.mean(hits)))
    return out


def main(argv: list[str] | None = None) -> dict:
    run = start("09_conv_front_end", __doc__, argv)
    import torch

    from edgeseq.contract import Preprocessing
    from edgeseq.exporters import explain, export
    from edgeseq.runtime import StreamingPredictor, StreamPool

    # the gallery's plots are refreshed on request only: full-run plots stay in artifacts/
    run.plots = run.out
    train_utts, y_train, test_utts, y_test = load_vowels()
    if run.quick:
        test_utts, y_test = test_utts[:60], y_test[:60]
    flat = np.concatenate(train_utts)
    mean, std = flat.mean(0), flat.std(0) + 1e-6  # per coefficient, into the contract
    X, lengths = pad([(u - mean) / std for u in train_utts])
    epochs, hidden = run.pick(60, 4), run.pick(32, 16)
    model = build_model(front=True, hidden=hidden)
    seconds = train(run, model, X, lengths, y_train, epochs)
    baseline = build_model(front=False, hidden=hidden)
    train(run, baseline, X, lengths, y_train, epochs)

    report = explain(model, torch.from_numpy(X[:2, :8]))
    run.table(
        "How the model streams (edgeseq.exporters.explain)",
        ["layer", "type", "streamed as", "state"],
        [(p.path, p.kind, p.how, p.state) for p in report.layers],
    )
    onnx_path = run.path("speakers.onnx")
    # lengths=True: streams with different frame counts share one pool call (each conv
    # cache then keeps its row's last valid frames); without it the pool groups by count
    contract = export(
        model, onnx_path, example=torch.from_numpy(X[:2, :8]), lengths=True,
        preprocessing=Preprocessing(mean=mean.tolist(), std=std.tolist()),
    )  # fmt: skip
    run.table(
        "State pairs in the contract",
        ["state input", "shape", "batch axis"],
        [(s.input, str(s.shape), s.batch_axis) for s in contract.states],
    )

    solo = StreamingPredictor(onnx_path, threads=1)
    with torch.inference_mode():
        norm = ((test_utts[0] - mean) / std).astype(np.float32)
        ref = model(torch.from_numpy(norm)[None])[0].numpy()
    run.parity("speaker logits", solo, test_utts[0], reference=ref)

    # every held-out utterance at its own pace through one pool
    rng = np.random.default_rng(run.seed)
    pool = StreamPool(onnx_path, max_streams=len(test_utts), threads=1)
    ids = [pool.open() for _ in test_utts]
    rates = rng.uniform(0.5, 3.0, size=len(test_utts))  # mean frames per tick
    pos = [0] * len(test_utts)
    outs: list[list[np.ndarray]] = [[] for _ in test_utts]
    ticks = calls = 0
    while any(p < len(u) for p, u in zip(pos, test_utts)):
        ticks += 1
        req = {}
        for d, (u, r) in enumerate(zip(test_utts, rates)):
            n = min(int(rng.poisson(r)), len(u) - pos[d])
            if n:
                req[ids[d]] = u[pos[d] : pos[d] + n]
        if not req:
            continue
        calls += 1
        result = pool.step(req)
        for d, sid in enumerate(ids):
            if sid in result:
                outs[d].append(result[sid])
                pos[d] += len(req[sid])
                if pos[d] == len(test_utts[d]):
                    pool.close(sid)
    logits = [np.concatenate(o) for o in outs]
    diff = 0.0
    for u, lg in zip(test_utts, logits):
        solo.reset()
        diff = max(diff, float(np.max(np.abs(solo.step(u) - lg))))
    print(f"parity [pool vs solo]: {len(test_utts)} streams, max |diff| {diff:.1e} (limit 1e-05)")
    run.results.setdefault("parity", {})["pool vs solo"] = {
        "streams": len(test_utts),
        "max_abs": diff,
    }
    assert diff <= 1e-5, f"pool outputs differ from a solo predictor's by {diff}"

    fractions = (0.25, 0.5, 0.75, 1.0)
    acc = running_accuracy(logits, y_test, fractions)
    Xt, lt = pad([(u - mean) / std for u in test_utts])
    with torch.inference_mode():
        base = baseline(torch.from_numpy(Xt)).numpy()
    base_acc = running_accuracy([b[:n] for b, n in zip(base, lt)], y_test, fractions)
    sizes = [len(u) for u in test_utts]
    run.table(
        f"{len(test_utts)} held-out utterances (9 speakers) through one StreamPool",
        ["measure", "value"],
        [
            ["utterances (train / held out)", f"{len(train_utts)} / {len(test_utts)}"],
            ["frames per utterance", f"{min(sizes)} to {max(sizes)}"],
            ["ticks / pool calls", f"{ticks} / {calls}"],
            ["state pairs (2 conv caches + GRU h)", len(contract.states)],
            ["pool vs solo predictor, max |diff|", diff],
            ["accuracy at the end, conv front-end + GRU (ONNX, pool)", acc[-1]],
            ["accuracy at the end, GRU alone (PyTorch)", base_acc[-1]],
            *[
                [f"accuracy after {f:.0%} of the utterance, conv + GRU / GRU", f"{a:.3f} / {b:.3f}"]
                for f, a, b in zip(fractions[:-1], acc, base_acc)
            ],
            ["train seconds (conv + GRU)", round(seconds, 1)],
        ],
    )  # fmt: skip
    run.record("final_accuracy", acc[-1])
    run.record("baseline_final_accuracy", base_acc[-1])
    run.record("accuracy_by_fraction", dict(zip(map(str, fractions), acc)))

    plt = run.pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    i = int(np.argmax(sizes))
    a.plot(np.arange(1, sizes[i] + 1), test_utts[i], lw=0.8)
    a.set_title(f"utterance {i}: 12 LPC coefficients (speaker {y_test[i] + 1})")
    a.set_xlabel("frame")
    grid = np.linspace(0.05, 1.0, 20)
    curves = {
        "conv front-end + GRU (ONNX, pool)": running_accuracy(logits, y_test, grid),
        "GRU alone (PyTorch)": running_accuracy([x[:n] for x, n in zip(base, lt)], y_test, grid),
    }
    for (label, curve), marker in zip(curves.items(), "os"):
        b.plot(grid * 100, curve, marker + "-", label=label)
    low = min(min(c) for c in curves.values())
    b.set_ylim(max(0.0, low - 0.05), 1.0)
    b.set_xlabel("% of the utterance heard")
    b.set_ylabel("speaker accuracy")
    b.set_title("running speaker prediction")
    b.legend()
    run.save_plot(fig, "09_conv_front_end.png")
    return run.finish()


if __name__ == "__main__":
    main()
