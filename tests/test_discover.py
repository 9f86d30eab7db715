"""Third-party models: a Silero-VAD-like graph (raw samples [batch, time], state
[2, batch, 16], scalar sr) exported with plain torch.onnx and no contract streams with
named pairs, with discovery, with left context, and from a stored discovered contract."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from _models import VAD_CONTEXT, zoo
from click.testing import CliRunner

from edgeseq.cli import main
from edgeseq.errors import ContractError, InputError
from edgeseq.runtime import DiscoveryWarning, StreamingPredictor, StreamPool, discover
from edgeseq.runtime._session import graph_io

SR = {"sr": np.array(16000, np.int64)}
NAMED = {"state": {"state": "stateN"}, "constants": SR}
SAMPLES = np.random.default_rng(0).standard_normal(120).astype(np.float32)
CUTS = [0, 1, 17, 40, 41, 90, 120]  # chunk sizes 1, 16, 23, 1, 49, 30


def _reference(path: Path, samples: np.ndarray, context: int) -> tuple[np.ndarray, np.ndarray]:
    """Plain onnxruntime: zeros as the first context, the whole signal in one call."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.concatenate([np.zeros(context, np.float32), samples])[None]
    prob, state = sess.run(None, {"input": x, "state": np.zeros((2, 1, 16), np.float32), **SR})
    return prob[0], state


def _stream(p: StreamingPredictor, samples: np.ndarray) -> np.ndarray:
    out = None
    for a, b in itertools.pairwise(CUTS):
        chunk = samples[a:b]
        out = p.step(chunk if len(chunk) > 1 else chunk[0])  # a lone sample is a scalar
    return out


@pytest.mark.parametrize("model", ["vad", "vad_plain"])
def test_named_pairs_with_left_context_stream_exactly(model: str) -> None:
    path = zoo.get(model)
    p = StreamingPredictor(path, context=VAD_CONTEXT, **NAMED)
    prob = _stream(p, SAMPLES)
    ref_prob, ref_state = _reference(path, SAMPLES, VAD_CONTEXT)
    assert prob.shape == (1,)  # [batch, 1] output without the batch axis; no time axis
    np.testing.assert_allclose(prob, ref_prob, rtol=0, atol=1e-6)
    np.testing.assert_allclose(p.state["state"], ref_state, rtol=0, atol=1e-6)
    p.reset()
    np.testing.assert_allclose(_stream(p, SAMPLES), ref_prob, rtol=0, atol=1e-6)


def test_without_context_the_cut_dependence_is_refused() -> None:
    """The control: the conv needs 4 samples of history, so without context the state
    depends on how the samples are cut; the probe shows it and the predictor refuses."""
    path = zoo.get("vad")
    with pytest.raises(ContractError, match=r"depends on how its samples are cut.*window=N"):
        StreamingPredictor(path, **NAMED)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    state = np.zeros((2, 1, 16), np.float32)
    for a, b in ((0, 10), (10, 20)):  # what running it anyway would give
        _, state = sess.run(None, {"input": SAMPLES[None, a:b], "state": state, **SR})
    ref = _reference(path, SAMPLES[:20], VAD_CONTEXT)[1]
    assert not np.allclose(state, ref, atol=1e-3)


@pytest.mark.parametrize("model", ["vad", "vad_plain"])
def test_discovery_finds_the_state_and_matches_named_pairs(model: str) -> None:
    path = zoo.get(model)
    with pytest.warns(DiscoveryWarning, match="'state' -> 'stateN'"):
        found = StreamingPredictor(path, constants=SR, context=VAD_CONTEXT)
    named = StreamingPredictor(path, context=VAD_CONTEXT, **NAMED)
    assert found.discovery is not None and found.discovery.discovered
    assert named.discovery is not None and not named.discovery.discovered  # probed shapes only
    (pair,) = found.contract.states
    assert (pair.input, pair.output, pair.batch_axis, pair.shape) == (
        "state",
        "stateN",
        1,
        [2, "batch", 16],
    )
    assert found.contract.constants == ["sr"]
    assert [o.name for o in found.contract.data_outputs()] == ["output"]
    np.testing.assert_array_equal(_stream(found, SAMPLES), _stream(named, SAMPLES))


def test_discovery_report_and_missing_constant() -> None:
    path = zoo.get("vad_plain")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    report = discover(*graph_io(session)).report()
    assert "frames    'input' [batch, time] float32" in report
    assert "needs constants={'sr': value}" in report and "'sr' is not state" in report
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiscoveryWarning)
        with pytest.raises(InputError, match=r"constants=\{'sr': value\}"):
            StreamingPredictor(path)
        with pytest.raises(InputError, match="expected shape"):
            StreamingPredictor(path, constants={"sr": np.array([16000, 8000])})
        with pytest.raises(InputError, match="graph's inputs"):
            StreamingPredictor(path, constants={**SR, "nope": 1})


def test_bad_named_pairs_name_the_field() -> None:
    path = zoo.get("vad")
    with pytest.raises(ContractError, match=r"state\['nope'\].*graph input"):
        StreamingPredictor(path, state={"nope": "stateN"}, constants=SR)
    with pytest.raises(ContractError, match=r"state\['state'\].*graph output"):
        StreamingPredictor(path, state={"state": "nope"}, constants=SR)


def test_pool_streams_a_third_party_model_with_context() -> None:
    path = zoo.get("vad")
    pool = StreamPool(path, max_streams=3, context=VAD_CONTEXT, **NAMED)
    ids = [pool.open() for _ in range(3)]
    for a, b in itertools.pairwise(CUTS):
        out = pool.step({i: SAMPLES[a:b] * (i + 1) for i in ids})
    for i in ids:
        ref, _ = _reference(path, SAMPLES * (i + 1), VAD_CONTEXT)
        np.testing.assert_allclose(out[i], ref, rtol=0, atol=1e-6)


def test_inspect_prints_and_stores_the_discovered_contract(tmp_path: Path) -> None:
    runner = CliRunner()
    path, out = zoo.get("vad_plain"), tmp_path / "vad.edgeseq.onnx"
    res = runner.invoke(main, ["inspect", str(path)])
    assert res.exit_code == 0, res.output
    assert "discovered by shape" in res.output and "state -> stateN" in res.output
    args = ["inspect", str(path), "--context", str(VAD_CONTEXT), "--write-contract", str(out)]
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    with warnings.catch_warnings():
        warnings.simplefilter("error", DiscoveryWarning)  # the copy needs no guessing
        stored = StreamingPredictor(out, constants=SR)
    assert stored.discovery is None and stored.engine.context == VAD_CONTEXT
    ref, _ = _reference(path, SAMPLES, VAD_CONTEXT)
    np.testing.assert_allclose(_stream(stored, SAMPLES), ref, rtol=0, atol=1e-6)
    res = runner.invoke(main, ["inspect", str(path), "--write-contract", str(path)])
    assert res.exit_code != 0 and "original" in res.output


def test_inspect_with_named_pairs_and_refusal(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["inspect", str(zoo.get("vad")), "--state", "state=stateN", "--json"])
    assert res.exit_code == 0 and '"output": "stateN"' in res.output
    res = runner.invoke(main, ["inspect", str(zoo.get("linear"))])
    assert res.exit_code == 1 and "discovery expected a state pair" in res.output
    assert "Traceback" not in res.output
