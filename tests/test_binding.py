"""State kept as OrtValues with IO binding (ping-pong) gives the plain path's outputs, and
device names map to providers with clear errors."""

from __future__ import annotations

import time

import numpy as np
import onnxruntime as ort
import pytest
from _models import zoo

from edgeseq.contract import Contract
from edgeseq.errors import ProviderError
from edgeseq.runtime import StreamingPredictor, StreamPool, parse_device, resolve_providers
from edgeseq.runtime._engine import initial_state

CHUNKS = [1, 1, 4, 1, 7, 2, 1, 1, 3]


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn", "scaled", "char_lm"])
def test_io_binding_equals_plain_path(name: str) -> None:
    path = zoo.get(name)
    bound, plain = StreamingPredictor(path), StreamingPredictor(path, io_binding=False)
    rng = np.random.default_rng(0)
    for n in CHUNKS:
        if name == "char_lm":
            x = rng.integers(4, 10, size=n) if n > 1 else np.int64(5)
        else:
            x = rng.standard_normal((n, 3) if n > 1 else 3).astype(np.float32)
        np.testing.assert_array_equal(bound.step(x), plain.step(x))
    for k, v in bound.state.items():
        np.testing.assert_array_equal(v, plain.state[k])


def test_io_binding_equals_hand_written_session_run() -> None:
    """The reference: onnxruntime's session.run with numpy state, one frame per call."""
    path = zoo.get("lstm")
    p = StreamingPredictor(path)
    c = p.contract
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    state = {s.input: initial_state(s) for s in c.states}
    names = ["y", *c.state_outputs]
    for x in np.random.default_rng(1).standard_normal((20, 3)).astype(np.float32):
        feed = {"x": x[None, None], "lengths": np.ones(1, np.int32), **state}
        y, *new = sess.run(names, feed)
        state = dict(zip(c.state_inputs, new))
        np.testing.assert_array_equal(p.step(x), y[0, 0])


def test_state_ping_pongs_between_two_device_buffers() -> None:
    p = StreamingPredictor(zoo.get("gru"))
    slot = p._slot
    buffers = [[b.value for b in s] for s in slot.sets]
    assert all(isinstance(v, ort.OrtValue) for s in buffers for v in s)
    seen = []
    for _ in range(4):
        p.step(np.ones(3, np.float32))
        seen.append(slot.cur)
    assert seen == [1, 0, 1, 0]  # each call writes the other set
    assert [[b.value for b in s] for s in slot.sets] == buffers  # never reallocated


def test_outputs_with_unknown_axes_are_bound_dynamically() -> None:
    """An output whose size the contract cannot predict is allocated by onnxruntime."""
    path = zoo.get("lstm")
    base = StreamingPredictor(path).contract.to_dict()
    base["outputs"][0]["shape"] = ["batch", "time", "n_out"]
    p = StreamingPredictor(path, contract=Contract.from_dict(base))
    ref = StreamingPredictor(path)
    x = np.random.default_rng(2).standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_array_equal(p.step(x), ref.step(x))
    np.testing.assert_array_equal(p.step(x[0]), ref.step(x[0]))


def test_pool_bound_equals_pool_plain() -> None:
    path = zoo.get("lstm")
    a, b = StreamPool(path, max_streams=3), StreamPool(path, max_streams=3, io_binding=False)
    ids = [(a.open(), b.open()) for _ in range(3)]
    rng = np.random.default_rng(3)
    for _ in range(4):
        frames = [rng.standard_normal((int(rng.integers(1, 4)), 3)) for _ in ids]
        oa = a.step({i: f for (i, _), f in zip(ids, frames)})
        ob = b.step({j: f for (_, j), f in zip(ids, frames)})
        for i, j in ids:
            np.testing.assert_array_equal(oa[i], ob[j])


def test_missing_provider_lists_what_is_installed() -> None:
    with pytest.raises(ProviderError) as info:
        StreamingPredictor(zoo.get("gru"), device="cuda")
    text = str(info.value)
    assert "CUDAExecutionProvider" in text and "CPUExecutionProvider" in text
    assert "onnxruntime-gpu" in text
    with pytest.raises(ProviderError, match="NAME:INDEX"):
        parse_device("cuda:x")


def test_device_names_map_to_providers_and_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_providers("cpu") == ["CPUExecutionProvider"]
    assert parse_device("cpu").memory == "cpu"
    fake = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: fake)
    dev = parse_device("cuda:1")
    assert dev.providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert (dev.memory, dev.index) == ("cuda", 1)  # state buffers live on the GPU
    assert dev.provider_options == [{"device_id": "1"}, {}]


def test_per_frame_step_beats_a_hand_written_session_run_loop() -> None:
    """The hot path: one frame per call. Interleaved rounds, best of each (noise-robust)."""
    path = zoo.get("lstm")
    p = StreamingPredictor(path, threads=1)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    c = p.contract
    xs = np.random.default_rng(4).standard_normal((300, 3)).astype(np.float32)
    lengths = np.ones(1, np.int32)

    def hand() -> None:
        state = [initial_state(s) for s in c.states]
        for x in xs:
            _, *state = sess.run(
                None, {"x": x[None, None], "lengths": lengths, **dict(zip(c.state_inputs, state))}
            )

    def pred() -> None:
        for x in xs:
            p.step(x)

    best = {"hand": np.inf, "pred": np.inf}
    for _ in range(7):
        for name, fn in (("hand", hand), ("pred", pred)):
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    assert best["pred"] < best["hand"], best
