"""Triton repositories from the contract, without a server: every cell × topology gets a
config that Triton's own schema parses and that matches its graph; the onnxruntime-backend
graph driven exactly as Triton's sequence batcher drives it (state fed back batch-first,
START on garbage state, several sequences per call, ids reused after END) equals
StreamingPredictor; corrupted configs are refused with the field named."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from _triton_support import (
    PLAN,
    Reference,
    frames_for,
    init_source,
    model,
    seeds_from_init,
    third_party_model,
    user_init_model,
    vad_with_context,
)

from edgeseq.errors import ExportError, InputError
from edgeseq.exporters.triton import TritonOptions, load_config, to_triton
from edgeseq.exporters.triton.emulate import Request, SequenceBatcher
from edgeseq.train.models import CELLS, TOPOLOGIES

ATOL = 1e-5
CASES = [(c, t) for c in CELLS for t in TOPOLOGIES]


def _strategy(cell: str) -> str:
    return "direct" if cell == "gru" else "oldest"  # both strategies over the matrix


@pytest.mark.parametrize("backend", ["onnxruntime", "python"])
@pytest.mark.parametrize("cell,topology", CASES, ids=[f"{c}-{t}" for c, t in CASES])
def test_config_parses_and_matches_the_graph(
    cell: str, topology: str, backend: str, tmp_path: Path
) -> None:
    strategy = _strategy(cell)
    repo = to_triton(model(cell, topology), tmp_path, name="m", backend=backend,
                     options=TritonOptions(max_batch=8, strategy=strategy))  # fmt: skip
    conditioned = topology in ("one_to_many", "seq2seq")
    assert set(repo.models) == ({"m", "m_init"} if conditioned else {"m"})
    cfg = load_config(tmp_path / "m" / "config.pbtxt")  # Triton's schema, again
    assert (cfg.name, cfg.backend, cfg.max_batch_size) == ("m", backend, 8)
    c = repo.contracts["m"]
    if topology == "one_to_one":  # offline: every request is a whole sequence
        assert cfg.HasField("dynamic_batching") and not cfg.HasField("sequence_batching")
        return
    seq = cfg.sequence_batching
    assert seq.WhichOneof("strategy_choice") == strategy
    controls = {ci.name for ci in seq.control_input}
    inputs = {i.name: i for i in cfg.input}
    if backend == "onnxruntime":
        assert controls == ({"START", "READY"} if strategy == "direct" else {"START"})
        assert [s.input_name for s in seq.state] == c.state_inputs
        for s, pair in zip(seq.state, c.states):
            assert pair.batch_axis == 0 and list(s.dims) == pair.shape[1:]  # batch-first
            assert list(s.initial_state[0].dims) == list(s.dims)
        assert not set(inputs) & set(c.state_inputs)
        assert all(not i.optional for i in inputs.values())
    else:
        assert controls >= {"START", "END"} and not seq.state  # model.py keeps the state
    seeds = {n for n in inputs if n.startswith("init.")}
    assert len(seeds) == (len(c.states) if conditioned else 0)
    assert all(inputs[n].optional == (backend == "python") for n in seeds)


def _drive(folder: Path, path: Path, strategy: str, seed: int = 0) -> float:
    """Run PLAN through SequenceBatcher (garbage state on START) and through local
    references; return the largest difference, asserting batches really formed."""
    rng = np.random.default_rng(seed)
    sb = SequenceBatcher(folder, start_state="garbage", seed=seed)
    refs: dict[int, Reference] = {}
    init_dir = folder.with_name(folder.name + "_init")
    worst, calls = 0.0, 0
    for round_ in PLAN:
        groups = defaultdict(list)
        for sid, t, start, end in round_:
            groups[t].append((sid, start, end))
        for t, members in groups.items():
            batch, expected = [], []
            for sid, start, end in members:
                ref = refs.setdefault(sid, Reference(path))
                x = frames_for(ref.p.contract, rng, t)
                inputs = {ref.p.contract.frames.name: x}
                if ref.init_path is not None:  # a conditioned decoder: seeds on every request
                    src = init_source(_init_contract(ref), rng)
                    seeds = seeds_from_init(init_dir, src)
                    if start:
                        ref.start(src)
                    inputs.update({k: v if start else np.zeros_like(v) for k, v in seeds.items()})
                elif start:
                    ref.start()
                batch.append(Request(sid, inputs, start=start, end=end))
                expected.append(ref.step(x))
            outs = sb.infer(batch)
            calls += 1
            for out, want in zip(outs, expected):
                got = next(iter(out.values()))
                assert got.shape == want.shape, (got.shape, want.shape)
                worst = max(worst, float(np.abs(got - want).max()))
    assert sb.calls == calls and not sb.sequences  # every sequence ended: state released
    return worst


def _init_contract(ref: Reference):
    from edgeseq.runtime.discover import read_contract

    return read_contract(str(ref.init_path))[0]


STATEFUL = [(c, t) for c, t in CASES if t != "one_to_one"]


@pytest.mark.parametrize("cell,topology", STATEFUL, ids=[f"{c}-{t}" for c, t in STATEFUL])
def test_graph_driven_like_triton_equals_predictor(cell: str, topology: str, tmp_path: Path):
    strategy = _strategy(cell)
    path = model(cell, topology)
    to_triton(path, tmp_path, name="m", options=TritonOptions(max_batch=8, strategy=strategy))
    worst = _drive(tmp_path / "m", path, strategy)
    assert worst <= ATOL, f"{cell}/{topology}: Triton-style run differs by {worst:.3g}"


SPECIAL = ["scaled", "unrolled", "user_init"]


@pytest.mark.parametrize("kind", SPECIAL)
@pytest.mark.parametrize("strategy", ["oldest", "direct"])
def test_preprocessing_chunks_and_initial_state_survive(kind: str, strategy: str, tmp_path):
    """Feature scaling baked into the graph, an unrolled graph's fixed chunk padded inside
    it, a non-zero initial state set by START: all equal the runtime."""
    from _models import zoo

    path = user_init_model() if kind == "user_init" else zoo.get(kind)
    to_triton(path, tmp_path / "repo", name="m", options=TritonOptions(strategy=strategy))
    worst = _drive(tmp_path / "repo" / "m", path, strategy, seed=3)
    assert worst <= ATOL, f"{kind}: differs by {worst:.3g}"


def test_third_party_model_with_constants(tmp_path: Path) -> None:
    """A model edgeseq did not export: pairs discovered (and said so), a constant baked in."""
    from edgeseq.runtime import DiscoveryWarning, StreamingPredictor

    path = third_party_model()
    scale = np.array(3, np.int64)
    with pytest.warns(DiscoveryWarning):
        to_triton(path, tmp_path, name="tp", constants={"scale": scale})
        with pytest.raises(ExportError, match="scale"):
            to_triton(path, tmp_path, name="tp2")
    with pytest.warns(DiscoveryWarning):
        ref = StreamingPredictor(path, constants={"scale": scale})
    sb = SequenceBatcher(tmp_path / "tp", start_state="garbage")
    rng = np.random.default_rng(0)
    for t in range(3):
        x, other = rng.normal(size=(2, 1, 4, 3)).astype(np.float32)
        a, _ = sb.infer([Request(1, {"x": x}, start=t == 0), Request(2, {"x": other}, t == 0)])
        np.testing.assert_allclose(a["y"], ref.step(x[0])[None], atol=ATOL)


def test_models_the_runtime_refuses_are_refused(tmp_path: Path) -> None:
    """Serve only what the runtime streams correctly: a VAD whose state depends on how its
    samples are cut needs its left context, which the onnxruntime graph cannot carry."""
    from _models import VAD_CONTEXT, zoo

    sr = {"sr": np.array(16000, np.int64)}
    with pytest.warns(UserWarning), pytest.raises(ExportError, match="cut"):
        to_triton(zoo.get("vad"), tmp_path, name="vad", constants=sr)
    with_context = vad_with_context(zoo.get("vad"), VAD_CONTEXT)
    with pytest.raises(ExportError, match="--backend python"):
        to_triton(with_context, tmp_path, name="vad", constants=sr)
    repo = to_triton(with_context, tmp_path, name="vad", constants=sr, backend="python")
    assert repo.contracts["vad"].model.extra["context"] == VAD_CONTEXT


def test_unrolled_refuses_more_frames_than_its_chunk(tmp_path: Path) -> None:
    from _models import zoo

    to_triton(zoo.get("unrolled"), tmp_path, name="u")
    sb = SequenceBatcher(tmp_path / "u")
    x = np.zeros((1, 5, 3), np.float32)  # chunk is 4: must fail loudly, never drop a frame
    with pytest.raises(Exception, match=r"(?i)shape|dim"):
        sb.infer([Request(1, {"x": x}, start=True)])


def test_sequence_batcher_gives_tritons_errors(tmp_path: Path) -> None:
    from _models import zoo

    to_triton(zoo.get("lstm"), tmp_path, name="m")
    sb = SequenceBatcher(tmp_path / "m")
    x = np.zeros((1, 1, 3), np.float32)
    with pytest.raises(InputError, match="START flag"):
        sb.infer([Request(7, {"x": x})])
    with pytest.raises(InputError, match="non-zero or non-empty correlation ID"):
        sb.infer([Request(0, {"x": x}, start=True)])
    with pytest.raises(InputError, match="equal shapes"):
        sb.infer([Request(1, {"x": x}, start=True), Request(2, {"x": x[:, [0, 0]]}, True)])


def test_context_models_point_to_the_python_backend(tmp_path: Path) -> None:
    import dataclasses

    from _models import zoo

    from edgeseq.exporters.triton import triton_variant
    from edgeseq.runtime.discover import read_contract

    path = zoo.get("lstm")
    c = read_contract(str(path))[0]
    c = dataclasses.replace(c, model=dataclasses.replace(c.model, extra={"context": 4}))
    import onnx

    with pytest.raises(ExportError, match="--backend python"):
        triton_variant(onnx.load(str(path)), c)
