"""Left context is refused where the model's state already holds its past.

``context=N`` (CLI ``--context N``) re-feeds the last ``N`` frames on every call. A model
whose state carries those frames (every edgeseq export; a plain RNN from elsewhere,
which streams exactly without context) would see them twice, so it is refused before the
first call; a model with a stateless front-end (the VAD's conv) keeps it, and a context
recorded in the contract is the model author's word.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from _cli import edgeseq, one_error_line
from _models import VAD_CONTEXT, zoo
from test_state_pairs_complete import external_lstm

from edgeseq.errors import InputError
from edgeseq.runtime import StreamingPredictor, StreamPool

SR = {"sr": np.array(16000)}
EXT = {"state": {"h0": "hn", "c0": "cn"}}


def gain_model(path: Path, init: float | None) -> Path:
    """A model from elsewhere whose front-end needs one frame of left context and whose
    state is a gain it keeps: ``y[t] = (x[t] + x[t-1]) * h``, ``h_out = h_in``, with
    ``x[-1] = 0`` in each call. Its stored contract starts ``h`` at ``init`` (None:
    zeros). From zeros every output is 0 whatever the cut, so it streams "exactly"
    without context; from a gain of 1 it does not: the probe must start where a stream
    starts, from the contract's initial state (the JavaScript runtime's fixture too)."""
    import onnx
    from onnx import TensorProto, helper

    from edgeseq.cli._inspect import write_contract

    f32 = TensorProto.FLOAT
    ints = lambda name, v: helper.make_tensor(name, TensorProto.INT64, [len(v)], v)  # noqa: E731
    graph = helper.make_graph(
        [
            helper.make_node("Pad", ["x", "pads"], ["padded"]),  # one zero frame in front
            helper.make_node("Slice", ["padded", "zero", "minus1", "one"], ["prev"]),
            helper.make_node("Add", ["x", "prev"], ["pair"]),
            helper.make_node("Unsqueeze", ["h_in", "one"], ["gain"]),
            helper.make_node("Mul", ["pair", "gain"], ["y"]),
            helper.make_node("Identity", ["h_in"], ["h_out"]),
        ],
        "gain",
        [
            helper.make_tensor_value_info("x", f32, ["batch", "time", 1]),
            helper.make_tensor_value_info("h_in", f32, ["batch", 1]),
        ],
        [
            helper.make_tensor_value_info("y", f32, ["batch", "time", 1]),
            helper.make_tensor_value_info("h_out", f32, ["batch", 1]),
        ],
        [ints("pads", [0, 1, 0, 0, 0, 0]), ints("zero", [0]), ints("minus1", [-1]),
         ints("one", [1])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    raw = path.with_suffix(".raw.onnx")
    onnx.save(model, raw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DiscoveryWarning
        contract = StreamingPredictor(raw, state={"h_in": "h_out"}).contract
    if init is not None:
        pairs = [replace(p, init=[init]) for p in contract.states]
        contract = replace(contract, states=pairs)
    write_contract(str(raw), str(path), contract)
    raw.unlink()
    return path


@pytest.mark.parametrize("front", [StreamingPredictor, StreamPool])
@pytest.mark.parametrize("model", ["lstm", "gru", "unrolled"])
def test_context_is_refused_on_an_edgeseq_export(front, model: str) -> None:
    with pytest.raises(InputError, match=r"context=3: expected no left context.*edgeseq"):
        front(zoo.get(model), context=3)


@pytest.mark.parametrize("how", ["named", "discovered"])
def test_context_is_refused_on_an_rnn_that_streams_exactly_without_it(how: str) -> None:
    kw = EXT if how == "named" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DiscoveryWarning
        with pytest.raises(InputError, match=r"same state with the same outputs"):
            StreamingPredictor(external_lstm(), context=2, **kw)
        StreamingPredictor(external_lstm(), **kw)  # without context: as before


def test_context_is_kept_where_the_state_does_not_hold_the_past() -> None:
    """The VAD's conv needs 4 samples of history its state does not carry: its context
    streams exactly as one whole call does (see also test_discover.py)."""
    x = np.random.default_rng(0).standard_normal(48).astype(np.float32)
    p = StreamingPredictor(zoo.get("vad"), state={"state": "stateN"}, constants=SR, context=4)
    p.step(x[:20])
    pieces = np.asarray(p.step(x[20:]))
    assert p.engine.context == VAD_CONTEXT and pieces.shape == (1,)


def test_a_recorded_context_is_the_authors_word(tmp_path: Path) -> None:
    """The way out for a model documented to take context on top of its state: record it
    once in the contract; it is then used (and may be given again) without a refusal."""
    out = tmp_path / "with_context.onnx"
    done = edgeseq("inspect", external_lstm(), "--context", "2", "--write-contract", out)
    assert done.returncode == 0, done.stderr
    assert StreamingPredictor(out).engine.context == 2
    assert StreamingPredictor(out, context=2).engine.context == 2
    with pytest.raises(InputError, match="context=3"):
        StreamingPredictor(out, context=3)


def test_cli_context_on_an_edgeseq_forecaster_is_one_line(tmp_path: Path) -> None:
    csv = tmp_path / "f.csv"
    csv.write_text("1,2,3\n4,5,6\n7,8,9\n")
    line = one_error_line(edgeseq("stream", zoo.get("lstm"), "-i", csv, "--context", "2"))
    assert "--context 2: expected no left context" in line
    assert "edgeseq inspect MODEL --context 2 --write-contract OUT.onnx" in line
    done = edgeseq("stream", zoo.get("lstm"), "-i", csv)
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 3, done.stderr


def test_the_context_probe_starts_from_the_contracts_initial_state(tmp_path: Path) -> None:
    """A stream starts from the contract's initial state, so the probe does too: from a gain
    of 1 the gain model needs its context (kept, and exact); from zeros it streams the same
    without it (refused). A probe from zeros would refuse both."""
    with pytest.raises(InputError, match="same state with the same outputs"):
        StreamingPredictor(gain_model(tmp_path / "zeros.onnx", None), context=1)
    p = StreamingPredictor(gain_model(tmp_path / "one.onnx", 1.0), context=1)
    assert p.engine.context == 1
    x = np.random.default_rng(3).standard_normal((9, 1)).astype(np.float32)
    ys = np.concatenate([p.step(x[:4]), p.step(x[4:5]), p.step(x[5:])])
    want = x + np.concatenate([np.zeros((1, 1), np.float32), x[:-1]])  # gain 1, x[-1] = 0
    np.testing.assert_allclose(ys, want, rtol=0, atol=1e-6)
