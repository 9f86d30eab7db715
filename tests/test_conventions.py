"""State conventions third-party models use, each streamed discovered and named.

Every model here is exported with plain torch.onnx and no contract, with neutral dim names
("d0", "d1") so the probe, not a name, finds the batch and time axes. Streaming in uneven
chunks must match one plain onnxruntime call over the whole sequence from zero state.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edgeseq.errors import ContractError, InputError
from edgeseq.runtime import DiscoveryWarning, StreamingPredictor, StreamPool

F, H, T = 3, 8, 23
CUTS = [0, 1, 4, 11, 12, T]


def _batch_first_state(torch, nn):
    class M(nn.Module):  # state (batch, hidden), as a GRUCell user keeps it
        def __init__(self) -> None:
            super().__init__()
            self.gru = nn.GRU(F, H, batch_first=True)

        def forward(self, x, h):
            y, hn = self.gru(x, h.unsqueeze(0))
            return y, hn.squeeze(0)

    args = (torch.randn(2, 5, F), torch.zeros(2, H))
    axes = {"x": {0: "d0", 1: "d1"}, "h": {0: "d0"}, "y": {0: "d0", 1: "d1"}, "h_out": {0: "d0"}}
    return M(), args, ["x", "h"], ["y", "h_out"], axes, {"h": "h_out"}


def _stacked_hc(torch, nn):
    class M(nn.Module):  # one tensor (2, layers, batch, hidden) holding h and c
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(F, H, num_layers=2, batch_first=True)

        def forward(self, x, s):
            y, (h, c) = self.lstm(x, (s[0], s[1]))
            return y, torch.stack([h, c])

    args = (torch.randn(2, 5, F), torch.zeros(2, 2, 2, H))
    axes = {"x": {0: "d0", 1: "d1"}, "s": {2: "d0"}, "y": {0: "d0", 1: "d1"}, "s2": {2: "d0"}}
    return M(), args, ["x", "s"], ["y", "s2"], axes, {"s": "s2"}


def _time_major(torch, nn):
    class M(nn.Module):  # frames (time, batch, features)
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(F, H)

        def forward(self, x, h, c):
            y, (hn, cn) = self.lstm(x, (h, c))
            return y, hn, cn

    args = (torch.randn(5, 2, F), torch.zeros(1, 2, H), torch.zeros(1, 2, H))
    axes = {"x": {0: "d0", 1: "d1"}, "h0": {1: "d1"}, "c0": {1: "d1"}, "y": {0: "d0", 1: "d1"}}
    axes |= {"hn": {1: "d1"}, "cn": {1: "d1"}}
    return M(), args, ["x", "h0", "c0"], ["y", "hn", "cn"], axes, {"h0": "hn", "c0": "cn"}


def _int_position(torch, nn):
    class M(nn.Module):  # an int64 position counter carried next to the float state
        def __init__(self) -> None:
            super().__init__()
            self.gru = nn.GRU(F, H, batch_first=True)

        def forward(self, x, h, pos):
            y, hn = self.gru(x, h)
            steps = pos[:, None] + torch.arange(x.shape[1])[None, :]  # (batch, time)
            return y + 0.01 * steps.unsqueeze(-1).float(), hn, pos + x.shape[1]

    args = (torch.randn(2, 5, F), torch.zeros(1, 2, H), torch.zeros(2, dtype=torch.int64))
    axes = {"x": {0: "d0", 1: "d1"}, "h": {1: "d0"}, "pos": {0: "d0"}, "y": {0: "d0", 1: "d1"}}
    axes |= {"h_next": {1: "d0"}, "pos_next": {0: "d0"}}
    names = ["y", "h_next", "pos_next"]
    return M(), args, ["x", "h", "pos"], names, axes, {"h": "h_next", "pos": "pos_next"}


def _no_pattern_names(torch, nn):
    class M(nn.Module):  # names say nothing, outputs in another order than the inputs
        def __init__(self) -> None:
            super().__init__()
            self.gru = nn.GRU(F, H, batch_first=True)
            self.proj = nn.Linear(F, 5)

        def forward(self, x, alpha, omega):
            y, a2 = self.gru(x, alpha)
            return y, omega + self.proj(x).sum(1), a2  # (batch, 5) running sum

    args = (torch.randn(2, 5, F), torch.zeros(1, 2, H), torch.zeros(2, 5))
    axes = {"x": {0: "d0", 1: "d1"}, "alpha": {1: "d0"}, "omega": {0: "d0"}}
    axes |= {"y": {0: "d0", 1: "d1"}, "zeta": {0: "d0"}, "kappa": {1: "d0"}}
    names = ["y", "zeta", "kappa"]
    return M(), args, ["x", "alpha", "omega"], names, axes, {"alpha": "kappa", "omega": "zeta"}


def _no_batch_axis(torch, nn):
    class M(nn.Module):  # frames (time, features), one stream, state (1, 1, hidden)
        def __init__(self) -> None:
            super().__init__()
            self.gru = nn.GRU(F, H, batch_first=True)

        def forward(self, x, h):
            y, hn = self.gru(x.unsqueeze(0), h)
            return y[0], hn

    args = (torch.randn(5, F), torch.zeros(1, 1, H))
    return M(), args, ["x", "h"], ["y", "hn"], {"x": {0: "d0"}, "y": {0: "d0"}}, {"h": "hn"}


CONVENTIONS: dict[str, Callable] = {
    "batch_first_state": _batch_first_state,
    "stacked_h_and_c": _stacked_hc,
    "time_major": _time_major,
    "int64_position": _int_position,
    "no_pattern_names": _no_pattern_names,
    "no_batch_axis": _no_batch_axis,
}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, tuple[Path, dict, list[str], dict]]:
    import torch
    from torch import nn

    out = {}
    folder = tmp_path_factory.mktemp("conventions")
    for i, (name, make) in enumerate(CONVENTIONS.items()):
        torch.manual_seed(10 + i)
        module, args, ins, outs, axes, pairs = make(torch, nn)
        path = folder / f"{name}.onnx"
        torch.onnx.export(
            module.eval(), args, str(path), input_names=ins, output_names=outs,
            dynamic_axes=axes, dynamo=False, opset_version=17,
        )  # fmt: skip
        feed_shapes = {n: tuple(a.shape) for n, a in zip(ins, args)}
        out[name] = (path, pairs, outs, feed_shapes)
    return out


def _frames(name: str) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((T, F)).astype(np.float32)


def _reference(path: Path, name: str, x: np.ndarray, shapes: dict, outs: list[str]) -> np.ndarray:
    """One plain onnxruntime call over the whole sequence from zero state: the first output."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed: dict[str, np.ndarray] = {}
    for i, g in enumerate(sess.get_inputs()):
        if i == 0:
            feed[g.name] = {
                "time_major": x[:, None],
                "no_batch_axis": x,
            }.get(name, x[None])
            continue
        shape = [1 if s == 2 else s for s in shapes[g.name]]  # batch 2 at export -> 1
        if name == "stacked_h_and_c":
            shape = [2, 2, 1, H]
        dtype = np.int64 if "int" in g.type else np.float32
        feed[g.name] = np.zeros(shape, dtype)
    y = sess.run([outs[0]], feed)[0]
    return y[:, 0] if name == "time_major" else (y if name == "no_batch_axis" else y[0])


def _stream(p: StreamingPredictor, x: np.ndarray) -> np.ndarray:
    ys = [p.step(x[a:b]) for a, b in itertools.pairwise(CUTS)]
    return np.concatenate([y if isinstance(y, np.ndarray) else y[next(iter(y))] for y in ys])


@pytest.mark.parametrize("how", ["discovered", "named"])
@pytest.mark.parametrize("name", list(CONVENTIONS))
def test_convention_streams_like_one_whole_call(built, name: str, how: str) -> None:
    path, pairs, outs, shapes = built[name]
    x = _frames(name)
    if how == "named":
        p = StreamingPredictor(path, state=pairs)
    else:
        with pytest.warns(DiscoveryWarning):
            p = StreamingPredictor(path)
        got = {s.input: s.output for s in p.contract.states}
        assert got == pairs, p.discovery.report()
    ref = _reference(path, name, x, shapes, outs)
    np.testing.assert_allclose(_stream(p, x), ref, rtol=0, atol=1e-5)
    p.reset()
    np.testing.assert_allclose(_stream(p, x), ref, rtol=0, atol=1e-5)


def test_probe_reports_layouts_and_types(built) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiscoveryWarning)
        tm = StreamingPredictor(built["time_major"][0])
        nb = StreamingPredictor(built["no_batch_axis"][0])
        pos = StreamingPredictor(built["int64_position"][0])
    assert (tm.contract.frames.batch_axis, tm.contract.frames.time_axis) == (1, 0)
    assert "time-major" in tm.discovery.report()
    assert (nb.contract.frames.batch_axis, nb.contract.frames.time_axis) == (None, 0)
    assert nb.contract.states[0].batch_axis is None
    assert pos.contract.states[1].dtype == "int64"
    pos.step(_frames("x")[:5])
    assert pos.state["pos"].tolist() == [5]


def test_pool_batches_conventions_and_refuses_no_batch_axis(built) -> None:
    path, pairs, outs, shapes = built["time_major"]
    x = _frames("time_major")
    pool = StreamPool(path, max_streams=2, state=pairs)
    a, b = pool.open(), pool.open()
    ya = [pool.step({a: x[s:e], b: 2 * x[s:e]})[a] for s, e in itertools.pairwise(CUTS)]
    ref = _reference(path, "time_major", x, shapes, outs)
    np.testing.assert_allclose(np.concatenate(ya), ref, rtol=0, atol=1e-5)
    with pytest.raises(InputError, match=r"no batch axis.*one StreamingPredictor per stream"):
        StreamPool(built["no_batch_axis"][0], state=built["no_batch_axis"][1])


def test_named_pairs_that_disagree_with_the_probe(built) -> None:
    path = built["no_pattern_names"][0]
    with pytest.raises(ContractError, match=r"state\['alpha'\]: expected an output of the input"):
        StreamingPredictor(path, state={"alpha": "zeta", "omega": "kappa"})
    from edgeseq.contract import StatePair

    bad = StatePair("alpha", "kappa", [2, "batch", H], 1)
    with pytest.raises(ContractError, match=r"state\['alpha'\].*probe ran the model"):
        StreamingPredictor(path, state={"alpha": bad, "omega": "zeta"})
