"""The wire protocol table (no server): every message type round-trips, frames decode or
are refused with the documented reason, and docs/protocol.md covers the whole table."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from _models import zoo

from edgeseq.client import protocol as P
from edgeseq.errors import ProtocolError
from edgeseq.runtime import StreamPool

DOC = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text("utf-8")


def _example(cls: type[P.Message]) -> P.Message:
    values = {
        "stream": "s" * 22, "resume_token": "t" * 43, "features": 3, "dtype": "float32",
        "outputs": [{"name": "y", "shape": [2], "dtype": "float32", "time": True}],
        "window": None, "max_frames": 8, "frames": 2, "message": "why", "data": "AAAA",
    }  # fmt: skip
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in fields})


@pytest.mark.parametrize("name", sorted(P.MESSAGES))
def test_every_message_type_round_trips_and_is_documented(name: str) -> None:
    cls = P.MESSAGES[name]
    msg = _example(cls)
    sender = "server" if cls.sender == "server" else "client"
    assert P.decode(P.encode(msg), sender) == msg
    assert f'"type": "{name}"' in DOC or f"`{name}`" in DOC, f"docs/protocol.md lacks {name}"
    if cls.sender == "server":  # a client may not send it
        with pytest.raises(ProtocolError) as info:
            P.decode(P.encode(msg), "client")
        assert info.value.reason == "unknown_type"


def test_every_reason_and_status_is_documented() -> None:
    for reason in P.ERROR_REASONS:
        assert f"`{reason}`" in DOC, reason
    for status, label in P.HTTP_REFUSALS.items():
        assert re.search(rf"^\| {status} \|", DOC, re.M), status
        assert f"`{label}`" in DOC, label


def test_unknown_fields_are_ignored_and_required_ones_checked() -> None:
    msg = P.decode('{"type": "outputs", "frames": 1, "outputs": {}, "future": 1}', "server")
    assert isinstance(msg, P.Outputs) and msg.frames == 1
    with pytest.raises(ProtocolError, match="frames"):
        P.decode('{"type": "outputs"}', "server")
    assert isinstance(P.decode("Done", "client"), P.End)
    assert '"window":null' in P.encode(_example(P.Ready))  # required fields stay, null or not


@pytest.mark.parametrize(
    "data,reason",
    [
        (b"", "bad_size"),
        (b"\x00" * 11, "bad_size"),
        (np.full((1, 3), np.nan, "<f4").tobytes(), "non_finite"),
        (np.full((1, 3), -np.inf, "<f4").tobytes(), "non_finite"),
        (np.zeros((9, 3), "<f4").tobytes(), "too_many_frames"),
    ],
)
def test_bad_frames_are_refused_with_their_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        P.decode_frames(data, 3, "float32", 8)
    assert info.value.reason == reason


def test_frames_round_trip_float_and_int() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    data, t = P.encode_frames(x, "float32", 3)
    assert t == 2 and np.array_equal(P.decode_frames(data, 3, "float32", 8), x)
    data, t = P.encode_frames(x[0], "float32", 3)  # one frame [F]
    assert t == 1
    ids = np.array([5, 1, 7])
    data, t = P.encode_frames(ids, "int64", 1)
    assert t == 3 and P.decode_frames(data, 1, "int64", 8).ravel().tolist() == [5, 1, 7]
    with pytest.raises(ProtocolError, match="integer token ids"):
        P.encode_frames(np.array([0.5]), "int64", 1)
    with pytest.raises(ProtocolError, match=r"\[3\]"):
        P.encode_frames(np.zeros((2, 4)), "float32", 3)


def test_token_subprotocol_is_a_valid_token_for_any_secret() -> None:
    sub = P.token_subprotocol("a b/c+d=é")
    assert sub.startswith(P.TOKEN_SUBPROTOCOL)
    assert re.fullmatch(r"[A-Za-z0-9._~-]+", sub)  # RFC 6455 subprotocol token characters


def test_pool_on_batch_reports_streams_and_frames() -> None:
    seen: list[tuple[int, int]] = []
    pool = StreamPool(zoo.get("gru"), max_streams=4, on_batch=lambda s, f: seen.append((s, f)))
    a, b = pool.open(), pool.open()
    pool.step({a: np.zeros(3, np.float32), b: np.zeros((4, 3), np.float32)})
    pool.submit(a, np.zeros((2, 3), np.float32)).result(10)
    pool.shutdown()
    assert seen == [(2, 5), (1, 2)]


def test_the_hot_path_encoder_equals_the_table() -> None:
    body = {"y": [[0.1, 2.5]]}
    for saved in (None, 3):
        assert P.outputs_text(1, body, 4, saved) == P.encode(P.Outputs(1, body, 4, saved))
