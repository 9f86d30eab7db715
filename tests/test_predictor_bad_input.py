"""StreamingPredictor refuses bad input with an edgeseq error that says what was expected,
what was got and what to do, and leaves the stream exactly as it was (issue 2 §5)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from _models import zoo

from edgeseq.contract import METADATA_KEY
from edgeseq.errors import ContractError, EdgeseqError, InputError, ModelLoadError
from edgeseq.runtime import StreamingPredictor

RNG = np.random.default_rng(0)
GOOD = RNG.standard_normal((4, 3)).astype(np.float32)  # [T, F]
NEXT = RNG.standard_normal((3, 3)).astype(np.float32)

BAD_FRAMES: dict[str, Any] = {
    "rank 3": np.zeros((1, 2, 3), np.float32),
    "rank 0": np.float32(1.0),
    "feature size": np.zeros((2, 4), np.float32),
    "one frame, wrong size": np.zeros(5, np.float32),
    "dtype str": np.array(["a", "b", "c"]),
    "dtype bool": np.ones(3, bool),
    "dtype complex": np.ones(3, np.complex64),
    "NaN": np.array([[0.0, np.nan, 1.0]], np.float32),
    "Inf": np.array([0.0, 1.0, -np.inf], np.float32),
    "zero frames": np.zeros((0, 3), np.float32),
    "ragged list": [[1.0, 2.0, 3.0], [1.0]],
    "object": object(),
}


def _message_teaches(exc: BaseException) -> None:
    text = str(exc).lower()
    assert "expected" in text and "got" in text, text


@pytest.fixture(scope="module")
def lstm() -> Path:
    return zoo.get("lstm")


@pytest.mark.parametrize("case", list(BAD_FRAMES))
def test_bad_frames_are_refused_and_change_nothing(lstm: Path, case: str) -> None:
    p = StreamingPredictor(lstm)
    ref = StreamingPredictor(lstm)
    for q in (p, ref):
        q.step(GOOD)
        q.step(GOOD[0])  # the single-frame fast path too
    before = p.state
    with pytest.raises(InputError) as info:
        p.step(BAD_FRAMES[case])
    _message_teaches(info.value)
    for k, v in p.state.items():
        np.testing.assert_array_equal(v, before[k])
    assert p.frames_seen == ref.frames_seen == 5
    np.testing.assert_array_equal(p.step(NEXT), ref.step(NEXT))  # as if never called


def test_errors_are_edgeseq_and_value_errors(lstm: Path) -> None:
    p = StreamingPredictor(lstm)
    with pytest.raises(EdgeseqError):
        p.step(np.zeros(7, np.float32))
    with pytest.raises(ValueError):  # generic callers catch it the usual way
        p.step(np.zeros(7, np.float32))


def test_single_frame_fast_path_refuses_nan_too(lstm: Path) -> None:
    p = StreamingPredictor(lstm)
    y = p.step(GOOD[0])
    for bad in ([np.nan, 0, 0], [0, np.inf, 0], [0, -np.inf, np.inf]):
        with pytest.raises(InputError, match="NaN or Inf"):
            p.step(np.asarray(bad, np.float32))
    p.step(np.full(3, 1e15, np.float32))  # large but finite is accepted
    assert y.shape == (2,)


def test_token_model_bad_ids(tmp_path: Path) -> None:
    p = StreamingPredictor(zoo.get("char_lm"))
    n = len(p.contract.preprocessing.vocab)
    p.step(np.array([4, 5]))
    before = p.state
    for bad in (np.array([0.5, 1.5]), np.array([n]), np.array([-1]), "text"):
        with pytest.raises(InputError) as info:
            p.step(bad)
        assert "expected" in str(info.value) or "must be in" in str(info.value)
    for k, v in p.state.items():
        np.testing.assert_array_equal(v, before[k])


def test_set_state_refusals_change_nothing(lstm: Path) -> None:
    p = StreamingPredictor(lstm)
    p.step(GOOD)
    before = p.state
    name = next(iter(before))
    bad_states = [
        {name: before[name]},  # missing pairs
        {k: v[:, :, :4] for k, v in before.items()},  # wrong shape
        {k: np.full_like(v, np.nan) for k, v in before.items()},
    ]
    for bad in bad_states:
        with pytest.raises(InputError):
            p.set_state(bad)
        for k, v in p.state.items():
            np.testing.assert_array_equal(v, before[k])


# ---------------------------------------------------------------------- loading
def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist") as info:
        StreamingPredictor(tmp_path / "nope.onnx")
    assert "export" in str(info.value)


def test_not_onnx(tmp_path: Path) -> None:
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a model\n" * 20)
    with pytest.raises(ModelLoadError, match="expected a complete ONNX"):
        StreamingPredictor(path)


def test_truncated_file(lstm: Path, tmp_path: Path) -> None:
    data = lstm.read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated"):
        StreamingPredictor(path)
    with pytest.raises(ModelLoadError):
        StreamingPredictor(data[: len(data) // 3])  # bytes too
    with pytest.raises(ModelLoadError, match="empty"):
        StreamingPredictor(b"")


def test_folder_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="folder"):
        StreamingPredictor(tmp_path)


def test_model_without_contract_or_state(tmp_path: Path) -> None:
    """A stateless graph has nothing to discover: refused, with the three ways out."""
    with pytest.raises(ContractError) as info:
        StreamingPredictor(zoo.get("linear"))
    text = str(info.value)
    assert "no 'edgeseq.contract' metadata" in text
    assert "state=" in text and "export" in text
    _message_teaches(info.value)


def _with_contract(src: Path, dst: Path, edit) -> Path:
    proto = onnx.load(str(src))
    for prop in proto.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = edit(prop.value)
    onnx.save(proto, str(dst))
    return dst


def _edit_json(change):
    def edit(text: str) -> str:
        data = json.loads(text)
        change(data)
        return json.dumps(data)

    return edit


CONTRACT_EDITS = {
    "not json": (lambda s: s[:-5], "not valid JSON"),
    "version": (_edit_json(lambda d: d.update(version=99)), "'version'"),
    "state input name": (
        _edit_json(lambda d: d["states"][0].update(input="nope")),
        "states[0].input",
    ),
    "state shape": (
        _edit_json(lambda d: d["states"][0].update(shape=[3, "batch", 8])),
        "states[0].input shape",
    ),
    "output dtype": (
        _edit_json(lambda d: d["outputs"][0].update(dtype="int64")),
        "outputs[0].name dtype",
    ),
    "batch axis": (
        _edit_json(lambda d: d["states"][0].update(batch_axis=7)),
        "states[0].batch_axis",
    ),
    "inputs missing": (_edit_json(lambda d: d.update(inputs=[])), "'inputs'"),
    # issue 10 §4: these used to escape as RecursionError/AttributeError/TypeError/ValueError
    "nested 1e5 deep": (lambda s: "[" * 100_000 + "]" * 100_000, "not valid JSON"),
    "extra a string": (_edit_json(lambda d: d["model"].update(extra="abc")), "model.extra"),
    "chunk not a number": (_edit_json(lambda d: d["model"].update(chunk="abc")), "model.chunk"),
    "init wrong length": (
        _edit_json(lambda d: d["states"][0].update(init=[0.0, 1.0])),
        "states[0].init",
    ),
    "producer a list": (_edit_json(lambda d: d.update(producer=["a"])), "'producer'"),
    "lying state batch_axis": (
        _edit_json(lambda d: d["states"][0].update(batch_axis=0)),
        "states[0].batch_axis",
    ),
    "lying output batch_axis": (
        _edit_json(lambda d: d["outputs"][0].update(batch_axis=2)),
        "outputs[0].batch_axis",
    ),
    "mean wrong length": (
        _edit_json(lambda d: d["preprocessing"].update(mean=[1.0, 2.0])),
        "preprocessing.mean",
    ),
}


@pytest.mark.parametrize("case", list(CONTRACT_EDITS))
def test_bad_contract_names_the_field(lstm: Path, tmp_path: Path, case: str) -> None:
    edit, field = CONTRACT_EDITS[case]
    path = _with_contract(lstm, tmp_path / "bad.onnx", edit)
    with pytest.raises(ContractError) as info:
        StreamingPredictor(path)
    assert field in str(info.value)


def test_bad_threads_and_device(lstm: Path) -> None:
    with pytest.raises(ValueError, match="threads"):
        StreamingPredictor(lstm, threads=0)
    with pytest.raises(EdgeseqError, match="Available"):
        StreamingPredictor(lstm, device="no-such-device")


def test_failure_in_a_later_chunk_of_a_fixed_graph_rolls_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unrolled graph runs 9 frames as 3 calls; if the second fails, nothing changed."""
    path = zoo.get("unrolled")
    p, ref = StreamingPredictor(path), StreamingPredictor(path)
    p.step(GOOD)
    ref.step(GOOD)
    before = p.state
    real, calls = p._slot.call, []

    def flaky(xs, valid):
        calls.append(1)
        if len(calls) == 2:
            raise InputError("expected a working onnxruntime, got a simulated failure")
        return real(xs, valid)

    monkeypatch.setattr(p._slot, "call", flaky)
    x = RNG.standard_normal((9, 3)).astype(np.float32)
    with pytest.raises(InputError, match="simulated"):
        p.step(x)
    monkeypatch.undo()
    for k, v in p.state.items():
        np.testing.assert_array_equal(v, before[k])
    np.testing.assert_array_equal(p.step(x), ref.step(x))


def test_offline_fixed_chunk_graph_refuses_longer_sequences(tmp_path) -> None:
    """A bidirectional unrolled (offline) graph must not be split into independent pieces."""
    import torch

    from edgeseq.exporters import export

    class Bi(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = torch.nn.GRU(3, 4, batch_first=True, bidirectional=True)
            self.head = torch.nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.rnn(x)[0])

    torch.manual_seed(0)
    model = Bi().eval()
    path = tmp_path / "bi.onnx"
    export(model, path, example=torch.randn(2, 5, 3), mode="unrolled", chunk=8, offline=True)
    p = StreamingPredictor(path)
    x = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)[None])[0].numpy()
    assert np.abs(p.step(x) - ref).max() <= 1e-5
    with pytest.raises(InputError, match="at most 8 frames"):
        p.step(np.zeros((9, 3), np.float32))
