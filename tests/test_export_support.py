"""Tiny user-style models shared by the exporter tests, and the helpers that export,
stream and compare them (no tests here).

Importable as ``test_export_support`` (pytest puts tests/ on sys.path), also by the CLI
``--factory test_export_support:build_user`` tests.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

__all__ = [
    "Net",
    "UserNet",
    "X",
    "build_bidirectional",
    "build_user",
    "export_as",
    "pool_matches_solo",
    "random_frames",
    "stream",
    "torch_whole",
]

LAYER = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
FEATURES, HIDDEN, OUT = 3, 5, 2
X = torch.randn(2, 6, FEATURES, generator=torch.Generator().manual_seed(0))  # example input


class Net(nn.Module):
    """One recurrent layer in any configuration of the matrix, then a Linear head.

    ``forward(x)`` takes batch-first ``x`` ``(batch, time, 3)`` whatever ``batch_first``
    says (it transposes as users do) and passes no state unless ``init`` (a learned,
    batch-expanded initial state) is set.
    """

    def __init__(
        self,
        cell: str,
        layers: int = 1,
        batch_first: bool = True,
        bias: bool = True,
        dropout: float = 0.0,
        nonlinearity: str = "tanh",
        proj_size: int = 0,
        bidirectional: bool = False,
        init: bool = False,
        packed: bool = False,
    ) -> None:
        super().__init__()
        kw: dict = dict(
            num_layers=layers,
            batch_first=batch_first,
            bias=bias,
            dropout=dropout,
            bidirectional=bidirectional,
        )
        if cell == "rnn":
            kw["nonlinearity"] = nonlinearity
        if proj_size:
            kw["proj_size"] = proj_size
        self.cell, self.batch_first, self.packed = cell, batch_first, packed
        self.rnn = LAYER[cell](FEATURES, HIDDEN, **kw)
        dirs = 2 if bidirectional else 1
        h = proj_size or HIDDEN
        self.head = nn.Linear(h * dirs, OUT)
        g = torch.Generator().manual_seed(1)
        self.h0 = nn.Parameter(torch.randn(layers * dirs, 1, h, generator=g)) if init else None
        self.c0 = (
            nn.Parameter(torch.randn(layers * dirs, 1, HIDDEN, generator=g))
            if init and cell == "lstm"
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, time = x.shape[0], x.shape[1]
        hx = None
        if self.h0 is not None:
            h = self.h0.expand(-1, batch, -1).contiguous()
            hx = (h, self.c0.expand(-1, batch, -1).contiguous()) if self.c0 is not None else h
        if not self.batch_first:
            x = x.transpose(0, 1)
        if self.packed:
            x = pack_padded_sequence(x, torch.full((batch,), time), self.batch_first)
        y, _ = self.rnn(x, hx)
        if not self.batch_first:
            y = y.transpose(0, 1)
        return self.head(y)


class UserNet(nn.Module):
    """What users write: Conv1d(kernel 1) front-end -> LayerNorm -> LSTM -> Linear head."""

    def __init__(self, features: int = FEATURES, hidden: int = 6, out: int = OUT) -> None:
        super().__init__()
        self.front = nn.Conv1d(features, 4, kernel_size=1)
        self.norm = nn.LayerNorm(4)
        self.lstm = nn.LSTM(4, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.front(x.transpose(1, 2)).transpose(1, 2)  # (batch, time, 4)
        y, _ = self.lstm(torch.relu(self.norm(z)))
        return self.head(y)


def build_user() -> nn.Module:
    """A factory for ``edgeseq export --factory test_export_support:build_user``."""
    torch.manual_seed(0)
    return UserNet().eval()


def torch_whole(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """PyTorch on the whole sequence ``x`` ``(T, F)`` -> first output ``(T, out)``."""
    with torch.no_grad():
        y = model.eval()(torch.from_numpy(x)[None])
    return (y[0] if isinstance(y, tuple) else y)[0].numpy()


def stream(predictor, x: np.ndarray, k: int | None) -> np.ndarray:
    """Feed ``x`` ``(T, F)`` to ``predictor`` ``k`` frames per call; concatenated outputs."""
    predictor.reset()
    k = k or len(x)
    return np.concatenate([predictor.step(x[i : i + k]) for i in range(0, len(x), k)])


def build_bidirectional() -> nn.Module:
    """A factory whose model cannot stream (``--offline`` needed)."""
    torch.manual_seed(0)
    return Net("gru", bidirectional=True)


def random_frames(n: int = 23, seed: int = 0) -> np.ndarray:
    """``n`` frames ``(n, 3)`` of standard normal noise."""
    return np.random.default_rng(seed).standard_normal((n, FEATURES)).astype(np.float32)


def export_as(model: nn.Module, tmp_path, mode: str, **kw):
    """Export ``model`` from :data:`X` to ``tmp_path/m.onnx``: ``(path, contract)``.

    ``mode`` "native+lengths" is native with a lengths input (ragged rows in one call);
    "unrolled" uses chunks of 5 frames.
    """
    from edgeseq.exporters import export

    path = tmp_path / "m.onnx"
    chunk = 5 if mode == "unrolled" else None
    if mode == "native+lengths":
        mode, kw = "native", {**kw, "lengths": True}
    return path, export(model, path, example=X, mode=mode, chunk=chunk, **kw)


def pool_matches_solo(path, frames_per_call, seed=1) -> None:
    """Ragged pool steps == separate predictors; snapshots resume exactly, in and out."""
    from edgeseq.runtime import StreamingPredictor, StreamPool

    rng = np.random.default_rng(seed)
    pool = StreamPool(path, max_streams=6)
    ids = [pool.open() for _ in range(4)]
    solo = {i: StreamingPredictor(path) for i in ids}
    for _ in range(6):
        req = {
            i: random_frames(int(rng.integers(*frames_per_call)), int(rng.integers(1e6)))
            for i in ids
        }
        req = {i: f for i, f in req.items() if len(f) and rng.random() < 0.8} or {
            ids[0]: random_frames(2)
        }
        out = pool.step(req)
        for i, f in req.items():
            np.testing.assert_allclose(out[i], solo[i].step(f), rtol=0, atol=1e-6)
    a = ids[0]
    snap = pool.snapshot(a)
    f = random_frames(4, 9)
    after = pool.step({a: f})[a]
    pool.restore(a, snap)
    np.testing.assert_array_equal(pool.step({a: f})[a], after)
    p = StreamingPredictor(path)
    p.restore(pool.snapshot(a).to_bytes())  # the stream continues outside the pool
    g = random_frames(3, 10)
    np.testing.assert_allclose(p.step(g), pool.step({a: g})[a], rtol=0, atol=1e-6)
    for k, v in pool.snapshot(ids[1]).states.items():
        np.testing.assert_allclose(v, solo[ids[1]].state[k], rtol=0, atol=1e-6)
    if StreamingPredictor(path).contract.lengths is None:
        return  # rows of one call all have the same frames: no idle rows to keep
    resident = StreamPool(path, max_streams=4, resident=True)  # idle rows get zero frames
    r_ids = [resident.open() for _ in range(3)]
    r_solo = {i: StreamingPredictor(path) for i in r_ids}
    for step in range(4):
        req = {i: random_frames(2 + step, step) for i in r_ids if (i + step) % 2}
        out = resident.step(req)
        for i, f in req.items():
            np.testing.assert_allclose(out[i], r_solo[i].step(f), rtol=0, atol=1e-6)
