"""Graphs in the recurrent op's own layout (issue 20), and the pool's many-streams path.

The exported graph carries a stacked state in parts (one pair per layer, as the ONNX
recurrent ops take it) and, for native ops, frames time-major: the glue nodes that
converted at every call are gone. Users still see the state whole, old contracts still
load, and a pool that steps every stream one frame gets the same answers as separate
predictors.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from _models import zoo
from test_contract import make_contract

from edgeseq.contract import METADATA_KEY, Contract
from edgeseq.errors import ContractError, InputError
from edgeseq.exporters._onnx import op_histogram, read_contract
from edgeseq.exporters.seq import export_model
from edgeseq.runtime import StreamingPredictor, StreamPool
from edgeseq.train.models import SeqConfig, SeqModel

RECURRENT = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}
STATES = {"lstm": ("h", "c"), "gru": ("h",), "rnn": ("h",)}


def _model(cell: str) -> SeqModel:
    torch.manual_seed(0)
    cfg = SeqConfig(cell=cell, input_size=3, hidden_size=6, layers=2, output_size=2)  # type: ignore[arg-type]
    return SeqModel(cfg).eval()


@pytest.mark.parametrize("mode", ["native", "unrolled"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_state_travels_per_layer_and_users_see_it_whole(cell: str, mode: str, tmp_path) -> None:
    model, path = _model(cell), tmp_path / "m.onnx"
    export_model(model, path, mode=mode)
    c = read_contract(path)
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    names = [f"state_in.m.rnn.{s}" for s in STATES[cell]]
    # one pair per layer, each read by its op directly: no Slice/Split/Gather of a state
    # input and no Concat writing a state output
    assert [(p.input, p.part_of) for p in c.states] == [
        (f"{n}.l{k}", n) for n in names for k in (0, 1)
    ]
    state_io = set(c.state_inputs) | set(c.state_outputs)
    for node in proto.graph.node:
        if node.op_type in ("Slice", "Split", "Gather"):
            assert node.input[0] not in state_io, node
        if node.op_type == "Concat":
            assert not set(node.output) & state_io, node
    ops = op_histogram(proto)
    if mode == "native":
        assert ops[RECURRENT[cell]] == 2
        assert (c.frames.batch_axis, c.frames.time_axis) == (1, 0)  # time-major, as the op
        assert "Transpose" not in {n.op_type for n in proto.graph.node if "x" in n.input}
        assert not {"Split", "Concat", "Slice"} & set(ops), ops
    else:
        assert not set(RECURRENT.values()) & set(ops), ops  # still basic ops only
    views = c.state_views()
    assert [(v.name, v.shape) for v in views] == [(n, [2, "batch", 6]) for n in names]
    assert [v.output for v in views] == [n.replace("state_in", "state_out") for n in names]
    # users see (layers, 1, hidden) under the state's own name; streaming matches torch
    x = np.random.default_rng(0).standard_normal((9, 3)).astype(np.float32)
    pred = StreamingPredictor(path)
    got = np.concatenate([pred.step(x[:4]), pred.step(x[4:])])
    with torch.no_grad():
        y, final = model(torch.from_numpy(x)[None])
    np.testing.assert_allclose(got, y[0].numpy(), atol=1e-5, rtol=0)
    state = pred.state
    assert list(state) == names
    for name, want in zip(names, final if isinstance(final, tuple) else (final,)):
        np.testing.assert_allclose(state[name], want.numpy(), atol=1e-5, rtol=0)
    # set_state takes the whole states, or the graph's own pairs; a wrong shape changes nothing
    fresh = StreamingPredictor(path)
    fresh.set_state(state)
    np.testing.assert_allclose(fresh.step(x[:2]), pred.step(x[:2]), atol=1e-6, rtol=0)
    pairs = fresh.snapshot().states
    assert list(pairs) == c.state_inputs
    other = StreamingPredictor(path)
    other.set_state(pairs)
    for k, v in other.state.items():
        np.testing.assert_array_equal(v, fresh.state[k])
    before = other.state
    bad = {**before, names[0]: np.zeros((1, 1, 6), np.float32)}
    with pytest.raises(InputError, match=r"expected a float array of shape \(2, 1, 6\)"):
        other.set_state(bad)
    for k, v in other.state.items():
        np.testing.assert_array_equal(v, before[k])


def test_contracts_without_parts_load_and_keep_their_hash() -> None:
    """A contract written before issue 20 (no ``part_of`` anywhere) reads back to the same
    JSON, hence the same hash, and each pair is a state of its own."""
    c = make_contract()
    text = c.to_json()
    assert "part_of" not in text
    again = Contract.from_dict(json.loads(text))
    assert again.to_json() == text and again.hash() == c.hash()
    assert [(v.name, v.output, v.pairs) for v in again.state_views()] == [
        ("state_in.rnn.h", "state_out.rnn.h", (0,))
    ]


def _metadata(path: Path) -> str:
    return next(p.value for p in onnx.load(path).metadata_props if p.key == METADATA_KEY)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda s: s[0].update(part_of=7), "part_of"),
        (lambda s: s[0].update(part_of=""), "part_of"),
        (lambda s: s[1].update(shape=[1, "batch", 9]), "differ only in a fixed size"),
        (lambda s: [p.update(part_of=s[2]["input"]) for p in s[:2]], "no state pair has"),
    ],
)
def test_parts_that_cannot_stack_are_refused_at_load(change, match) -> None:
    d = json.loads(_metadata(zoo.get("lstm")))
    if not any(p.get("part_of") for p in d["states"]):
        pytest.fail("the zoo's lstm is expected to carry its state in parts")
    change(d["states"])
    with pytest.raises(ContractError, match=match):
        Contract.from_dict(d).state_views()  # check_graph ends with this, so loading does


def _pool_and_solo(path: Path, n: int) -> tuple[StreamPool, dict[int, StreamingPredictor]]:
    pool = StreamPool(path, max_streams=n)
    ids = [pool.open() for _ in range(n)]
    return pool, {i: StreamingPredictor(path) for i in ids}


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_pool_stepping_every_stream_equals_separate_predictors(cell: str) -> None:
    """All rows in place (rows in order, then shuffled by closing and reopening), and a
    subset through the gather path: each as separate predictors."""
    path, rng = zoo.get(cell), np.random.default_rng(3)
    pool, solo = _pool_and_solo(path, 6)
    f = int(pool.engine.frames.one_shape[0])
    for round_ in range(8):
        if round_ == 3:  # reopen two streams: rows no longer follow the ids' order
            for sid in list(solo)[:2]:
                pool.close(sid)
                del solo[sid]
            for _ in range(2):
                solo[pool.open()] = StreamingPredictor(path)
        ids = list(solo) if round_ % 3 else list(solo)[::2]
        ids = [ids[k] for k in rng.permutation(len(ids))]
        req = {i: rng.standard_normal(f).astype(np.float32) for i in ids}
        out = pool.step(req)
        assert list(out) == ids
        for i in ids:
            np.testing.assert_allclose(out[i], solo[i].step(req[i]), atol=1e-5, rtol=0)
    for i, p in solo.items():
        got = pool.snapshot(i).states
        for k, v in p.snapshot().states.items():
            np.testing.assert_allclose(got[k], v, atol=1e-5, rtol=0)


def test_pool_refuses_one_bad_frame_among_many_naming_it() -> None:
    path = zoo.get("lstm")
    pool, _ = _pool_and_solo(path, 5)
    f = int(pool.engine.frames.one_shape[0])
    ids = pool.ids
    frames = {i: np.ones(f, np.float32) for i in ids}
    before = {i: pool.snapshot(i).states for i in ids}
    for bad, match in (
        (np.array([np.nan] * f, np.float32), "NaN"),
        (np.ones(f + 1, np.float32), "values per frame"),
    ):
        with pytest.raises(InputError, match=rf"stream {ids[3]}: .*{match}"):
            pool.step({**frames, ids[3]: bad})
        for i in ids:  # all or nothing
            for k, v in pool.snapshot(i).states.items():
                np.testing.assert_array_equal(v, before[i][k])
    out = pool.step({**frames, ids[0]: np.ones(f, np.float64)})  # cast like one stream's call
    assert set(out) == set(ids)
