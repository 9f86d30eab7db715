"""Integer frames reach the model unchanged or are refused; finiteness checks stay silent.

An integer frame fed to a float input is cast; a float32 holds every integer up to 2**24
(a float16 up to 2048) and rounds some beyond. Every entry point that casts frames —
``StreamingPredictor.step``, ``StreamPool.step`` / ``step_rows`` / ``submit``, the CLI's
CSV reader and the client's wire encoder — refuses a value the cast would change, with
the limit, the value, its position and what to do, and changes nothing. Float frames
keep their usual rounding. The hot path's finiteness checks (a dot product) print no
floating-point warning when values overflow it or mix ±Inf.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from _models import zoo

from edgeseq.cli._frames import BadRecord, CsvFrames, Frame, FrameLayout
from edgeseq.client import protocol as P
from edgeseq.errors import InputError, ProtocolError
from edgeseq.exact import first_inexact, largest_exact
from edgeseq.runtime import StreamingPredictor, StreamPool
from edgeseq.runtime._frames import FrameSpec

BIG = 2**24 + 1  # the first integer float32 rounds (to 2**24)
GOOD = np.array([[1, 2, 3], [4, 5, 6]], np.int64)
BAD = np.array([[1, 2, 3], [4, BIG, 6]], np.int64)  # [T, F], bad at (1, 1)


def _refusal_teaches(
    exc: BaseException, limit: int = 2**24, value: int = BIG, floats: str = "float frames"
) -> None:
    text = str(exc)
    assert f"±{limit}" in text and str(value) in text, text  # the limit and the value
    assert "Scale the feature" in text and floats in text, text  # what to do


@pytest.mark.parametrize(
    ("values", "dtype", "first"),
    [
        ([1, 2**24, -(2**24)], np.float32, None),
        ([2**25, -(2**40), 3 * 2**30], np.float32, None),  # beyond 2**24 but exact
        ([7, -BIG], np.float32, ((1,), -BIG)),
        ([2**63 - 1], np.float32, ((0,), 2**63 - 1)),
        ([-(2**63)], np.float32, None),  # -2**63 is a power of two: exact
        ([2048, 2049], np.float16, ((1,), 2049)),
        ([65536], np.float16, ((0,), 65536)),  # exact odd part, but past float16's max
        ([2**53 + 1], np.float64, ((0,), 2**53 + 1)),
    ],
)
def test_first_inexact_finds_exactly_the_values_a_cast_changes(values, dtype, first) -> None:
    arr = np.array(values, np.int64)
    got = first_inexact(arr, dtype)
    if first is None:
        assert got is None
        assert (arr.astype(dtype).astype(object) == arr.astype(object)).all()
    else:
        assert (got.index, got.value) == first
        assert got.becomes != got.value
    big = np.array([2**64 - 1, 5], np.uint64)
    assert first_inexact(big, np.float32).value == 2**64 - 1  # unsigned past int64 too
    assert largest_exact(np.float16) == 2048 and largest_exact(np.float32) == 2**24


@pytest.mark.parametrize("model", ["lstm", "scaled"])
def test_predictor_refuses_inexact_integer_frames_and_changes_nothing(model: str) -> None:
    path = zoo.get(model)
    p, ref = StreamingPredictor(path), StreamingPredictor(path)
    for q in (p, ref):
        q.step(GOOD)
    before = p.state
    for bad, where in ((BAD, "index (1, 1)"), (BAD[1], "index (1,)")):
        with pytest.raises(InputError) as info:
            p.step(bad)
        _refusal_teaches(info.value)
        assert where in str(info.value)
    assert p.frames_seen == ref.frames_seen == 2
    for k, v in p.state.items():
        np.testing.assert_array_equal(v, before[k])
    exact = np.array([[2**25, -(2**24), 3]], np.int64)  # beyond 2**24 but exact: runs
    np.testing.assert_array_equal(p.step(exact), ref.step(exact.astype(np.float32)))
    floats = BAD.astype(np.float64)  # float frames keep their rounding: not refused
    np.testing.assert_array_equal(p.step(floats), ref.step(floats.astype(np.float32)))


def test_a_float16_input_refuses_integers_past_2048() -> None:
    contract = StreamingPredictor(zoo.get("lstm")).contract
    frames = replace(contract.frames, dtype="float16")
    half = replace(contract, inputs=[frames, *contract.inputs[1:]])
    spec = FrameSpec(half)
    x, _ = spec.check(np.array([[2048, -2048, 3]]))
    assert x.dtype == np.float16
    with pytest.raises(InputError) as info:
        spec.check(np.array([1, 2049, 3], np.int32))
    _refusal_teaches(info.value, 2048, 2049)
    assert "index (1,)" in str(info.value)


def test_pool_refuses_inexact_integer_frames_on_every_front() -> None:
    path = zoo.get("lstm")
    with StreamPool(path, max_streams=4) as pool:
        a, b = pool.open(), pool.open()
        pool.step({a: GOOD, b: GOOD})
        before = {s: pool.snapshot(s) for s in (a, b)}
        with pytest.raises(InputError) as info:
            pool.step({a: GOOD, b: BAD})
        _refusal_teaches(info.value)
        assert f"stream {b}" in str(info.value)
        rows = np.array([[1, 2, 3], [BIG, 5, 6]], np.int64)  # one frame per stream
        with pytest.raises(InputError) as info:
            pool.step_rows([a, b], rows)
        _refusal_teaches(info.value)
        assert f"stream {b}" in str(info.value)
        with pytest.raises(InputError) as info:
            pool.submit(a, BAD)
        _refusal_teaches(info.value)
        for s in (a, b):
            after = pool.snapshot(s)
            assert after.frames_seen == before[s].frames_seen == 2
            for k, v in after.states.items():
                np.testing.assert_array_equal(v, before[s].states[k])
        ok = np.array([[1, 2, 3], [2**24, 5, 6]], np.int64)
        assert pool.step_rows([a, b], ok).shape == (2, 2)  # exact values run


def _csv(text: str, layout: FrameLayout) -> list:
    return list(CsvFrames(text.encode().splitlines(), layout))


def test_the_csv_reader_refuses_integer_fields_the_cast_would_change() -> None:
    text = f"a,b,c\n1,2,3\n1,{BIG},3\n1,16777216,3\n1,{BIG}.0,3\n1,-{BIG},3\n"
    items = _csv(text, FrameLayout(3))
    assert [type(i) for i in items] == [Frame, BadRecord, Frame, Frame, BadRecord]
    assert items[1].message.startswith("line 3: field 2 (b):")
    _refusal_teaches(BadRecord("", items[1].problem), floats=f"as a float ({BIG}.0)")
    assert items[3].values[1] == 2**24  # written as a float: rounded, as float frames are
    half = _csv("2048\n2049\n", FrameLayout(None, dtype="float16"))
    assert isinstance(half[0], Frame) and isinstance(half[1], BadRecord)
    _refusal_teaches(BadRecord("", half[1].problem), 2048, 2049, "as a float (2049.0)")


def test_the_client_refuses_integer_frames_the_wire_would_change() -> None:
    data, t = P.encode_frames(GOOD, "float32", 3)
    assert t == 2 and np.frombuffer(data, "<f4").tolist() == GOOD.ravel().tolist()
    with pytest.raises(ProtocolError) as info:
        P.encode_frames(BAD, "float32", 3)
    _refusal_teaches(info.value)
    assert "index (1, 1)" in str(info.value)


def test_a_condition_vector_of_integers_must_reach_the_model_exactly(tmp_path: Path) -> None:
    """EncoderDecoder.start(condition) casts to float32 too (a one-to-many model)."""
    import torch

    from edgeseq.exporters.seq import export_model
    from edgeseq.runtime.conditioned import EncoderDecoder
    from edgeseq.train.models import SeqConfig, SeqModel

    torch.manual_seed(0)
    cfg = SeqConfig(
        cell="gru", input_size=5, hidden_size=8, output_size=6, vocab_size=6,
        condition_size=4, topology="one_to_many", task="caption",
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_model(SeqModel(cfg), tmp_path / "m.onnx")
    runner = EncoderDecoder(tmp_path / "m.onnx")
    runner.start(np.array([1, 2, 3, 4]))
    before = runner.decoder.state
    with pytest.raises(InputError) as info:
        runner.start(np.array([1, 2, BIG, 4]))
    _refusal_teaches(info.value)
    assert "index (2,)" in str(info.value)
    for k, v in runner.decoder.state.items():
        np.testing.assert_array_equal(v, before[k])
    runner.start(np.array([1, 2, 2**24, 4]))  # exact: runs


# ---------------------------------------------------------------------- silent checks
@pytest.fixture(scope="module")
def wide(tmp_path_factory) -> Path:
    """A model with 20 features per frame: its single frames take the dot-product check."""
    import torch

    from edgeseq.exporters.seq import export_model
    from edgeseq.train.models import SeqConfig, SeqModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("wide") / "wide.onnx"
    cfg = SeqConfig(cell="gru", input_size=20, hidden_size=8, output_size=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_model(SeqModel(cfg), path)
    return path


def _overflowing(shape: tuple[int, ...]) -> np.ndarray:
    return np.full(shape, 3e38, np.float32)  # finite, but any sum or square overflows


def _inf_mix(shape: tuple[int, ...]) -> np.ndarray:
    x = np.zeros(shape, np.float32)
    x.flat[0], x.flat[1] = np.inf, -np.inf  # a sum is Inf - Inf: "invalid"
    return x


@pytest.mark.parametrize("model", ["lstm", "wide"])
def test_finiteness_checks_print_no_floating_point_warnings(model: str, wide: Path) -> None:
    path = wide if model == "wide" else zoo.get(model)
    p, ref = StreamingPredictor(path), StreamingPredictor(path)
    ref._chunks = ref._fast = False  # the generic path: the reference
    f = p.contract.frames.shape[-1]
    chunk = np.zeros((4, f), np.float32)
    for q in (p, ref):
        q.step(chunk)
        q.step(chunk)  # the chunk's shape now has its bound plan: the dot-product check
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning would raise here
        for shape in ((4, f), (f,)):
            np.testing.assert_array_equal(
                p.step(_overflowing(shape)), ref.step(_overflowing(shape))
            )
            with pytest.raises(InputError, match="NaN or Inf"):
                p.step(_inf_mix(shape))
    assert p.frames_seen == ref.frames_seen
    with StreamPool(path, max_streams=2) as pool, warnings.catch_warnings():
        warnings.simplefilter("error")
        ids = [pool.open(), pool.open()]
        pool.step_rows(ids, _overflowing((2, f)))
        with pytest.raises(InputError, match="NaN or Inf"):
            pool.step_rows(ids, _inf_mix((2, f)))
