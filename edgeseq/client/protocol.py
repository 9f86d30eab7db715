"""The ``edgeseq serve`` wire protocol, as one table both ends share (docs/protocol.md).

One WebSocket connection to :data:`STREAM_PATH` is one stream. Binary messages carry
frames (``T × F`` little-endian values of the ``ready`` message's dtype; read and written
by :mod:`._binary`, whose functions this module re-exports); text messages are
JSON objects with a ``"type"``. Every message type is one frozen dataclass below, listed
in :data:`MESSAGES`; :func:`encode` and :func:`decode` are the only (de)serialisers.
Unknown fields are ignored on reading, so servers may add fields without breaking clients.

Sequence numbers: every message that changes a stream's state (frames, ``reset``,
``restore``) gets the next ``seq`` when it is applied; a refused message gets none. The
server's ``saved`` is the ``seq`` covered by its last durable save (absent without
``--state-dir``): a client keeps what it sent after ``saved`` so it can replay it if the
server comes back from that save.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

from edgeseq.client._binary import WIRE_DTYPES, check_finite, decode_frames, encode_frames
from edgeseq.errors import ProtocolError

__all__ = [
    "DONE_TEXT",
    "ERROR_REASONS",
    "HEALTH_PATH",
    "HTTP_REFUSALS",
    "MESSAGES",
    "METRICS_PATH",
    "MODEL_PATH",
    "PROTOCOL_VERSION",
    "RESUME_HEADER",
    "STREAM_PATH",
    "SUBPROTOCOL",
    "TOKEN_SUBPROTOCOL",
    "WIRE_DTYPES",
    "End",
    "Error",
    "Message",
    "OutputSpec",
    "Outputs",
    "Ready",
    "Reset",
    "Restore",
    "Resumed",
    "SnapshotMsg",
    "b64decode",
    "b64encode",
    "check_finite",
    "decode",
    "decode_frames",
    "encode",
    "encode_frames",
    "outputs_text",
    "token_subprotocol",
]

# the same text as ``json.dumps(d, separators=(",", ":"))``, without building an encoder per
# call nor tracking containers for cycles (plain lists of numbers): ~30% less per reply
_COMPACT = json.JSONEncoder(separators=(",", ":"), check_circular=False)

PROTOCOL_VERSION = 1
STREAM_PATH = "/v1/stream"
MODEL_PATH = "/v1/model"
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
SUBPROTOCOL = "edgeseq.v1"  # offered by browsers; the server selects it
TOKEN_SUBPROTOCOL = "bearer."  # + base64url(token): a browser's way to send the token
RESUME_HEADER = "X-Resume-Token"
DONE_TEXT = "Done"  # the bare text "Done" ends a stream, as sherpa-onnx clients send it

# `error` reasons: the connection stays open and the stream's state is unchanged
ERROR_REASONS: dict[str, str] = {
    "bad_json": "a text message that is not a JSON object with a string 'type'",
    "unknown_type": "a control message of a type the server does not take",
    "bad_size": "a binary message whose byte count is not a positive multiple of F × itemsize",
    "non_finite": "frames holding NaN or Inf",
    "too_many_frames": "more frames in one message than the server's max_frames",
    "bad_frames": "frames the model refuses (e.g. a token id outside the vocabulary)",
    "bad_snapshot": "a restore whose data is not a snapshot of this model",
    "at_capacity": "frames for a stream evicted while idle that cannot reopen: all slots taken",
}

# HTTP statuses of a refused handshake (or request), with the reason label /metrics counts
HTTP_REFUSALS: dict[int, str] = {
    400: "bad_request",  # e.g. a resume without X-Resume-Token
    401: "unauthorized",  # a token is configured and none (or a wrong one) was sent
    403: "forbidden",  # resume token does not match the stream
    404: "not_found",  # unknown (or ended, or expired) stream id, or unknown path
    409: "conflict",  # a saved stream of another model
    503: "unavailable",  # at capacity, or shutting down
}


# ---------------------------------------------------------------------- messages
@dataclass(frozen=True)
class OutputSpec:
    """One model output as a stream sees it: rows of ``shape`` (no batch or time axis)."""

    name: str
    shape: list[int | None]  # None: an axis whose size the model decides per call
    dtype: str = "float32"
    time: bool = True  # one row per frame; False: one row per message (e.g. a running class)


@dataclass(frozen=True)
class Message:
    """Base of every JSON message; ``type`` is the class's wire name."""

    type: ClassVar[str] = ""
    sender: ClassVar[str] = "both"  # "client", "server" or "both"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None or f.default is MISSING:  # optional fields: left out when None
                out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Message:
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in d.items() if k in known})
        except TypeError as exc:
            raise ProtocolError(
                f"{cls.type!r} message: {exc}; expected the fields "
                f"{sorted(known)} (see docs/protocol.md)."
            ) from None


@dataclass(frozen=True)
class Ready(Message):
    """Server → client, first message: the stream's id, its resume secret, the frame format.

    ``seq``/``frames`` count what was applied so far (0 for a new stream); ``resumed`` is
    None for a new stream, ``"live"`` when the server kept it in memory, ``"saved"`` when
    it came back from ``--state-dir`` (then ``saved_at`` is the save's Unix time and
    ``reason`` why it was saved: ``"shutdown"``, ``"idle"``, ``"periodic"``, ``"opened"``
    or ``"handover"``, and a :class:`Resumed` notice follows the re-delivered replies).
    ``redeliver`` replies follow at once: those applied after the client's ``acked``.
    ``frame_shape`` is one frame's shape (``[F]``; ``[]`` for token ids or raw samples):
    an array of that rank is one frame, one rank more is ``T`` frames. ``window_samples``
    is set for a model that takes raw samples in fixed windows (e.g. a transcriber):
    frames are then samples, any number per message, and each reply holds one row per
    window completed (zero or more); the server keeps an unfinished window's samples.
    """

    type: ClassVar[str] = "ready"
    sender: ClassVar[str] = "server"
    stream: str
    resume_token: str
    features: int
    dtype: str
    outputs: list[dict[str, Any]]
    window: int | None
    max_frames: int
    frame_shape: list[int] = field(default_factory=list)  # one frame's shape, e.g. [F]
    seq: int = 0
    frames: int = 0
    resumed: str | None = None
    reason: str | None = None
    saved_at: float | None = None
    saved: int | None = None
    redeliver: int = 0
    protocol: int = PROTOCOL_VERSION
    window_samples: int | None = None

    @property
    def output_specs(self) -> list[OutputSpec]:
        return [
            OutputSpec(o["name"], list(o["shape"]), o.get("dtype", "float32"), o.get("time", True))
            for o in self.outputs
        ]


@dataclass(frozen=True)
class Outputs(Message):
    """Server → client, one per binary message: ``{name: rows}``, one row per frame (per
    completed window when ``ready.window_samples`` is set)."""

    type: ClassVar[str] = "outputs"
    sender: ClassVar[str] = "server"
    frames: int
    outputs: dict[str, list]
    seq: int | None = None
    saved: int | None = None


@dataclass(frozen=True)
class Reset(Message):
    """Client → server: back to the initial state; the server echoes it with its ``seq``."""

    type: ClassVar[str] = "reset"
    seq: int | None = None
    saved: int | None = None


@dataclass(frozen=True)
class SnapshotMsg(Message):
    """Client → server asks (no ``data``); the reply's ``data`` is base64 snapshot bytes."""

    type: ClassVar[str] = "snapshot"
    data: str | None = None
    seq: int | None = None
    saved: int | None = None


@dataclass(frozen=True)
class Restore(Message):
    """Client → server with ``data`` (base64 snapshot bytes); echoed with its ``seq``."""

    type: ClassVar[str] = "restore"
    data: str | None = None
    seq: int | None = None
    saved: int | None = None


@dataclass(frozen=True)
class End(Message):
    """Client → server ends the stream; server → client: the total ``frames``, then it
    closes. ``reason`` ``"shutdown"`` (with ``resume``, the id) means resume it later."""

    type: ClassVar[str] = "end"
    frames: int | None = None
    seq: int | None = None
    reason: str | None = None
    resume: str | None = None
    saved: int | None = None


@dataclass(frozen=True)
class Error(Message):
    """Server → client: the last message was refused; nothing changed. ``reason`` is a key
    of :data:`ERROR_REASONS`."""

    type: ClassVar[str] = "error"
    sender: ClassVar[str] = "server"
    message: str
    reason: str = "bad_json"
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Resumed(Message):
    """Server → client, after ``ready`` (and its re-delivered replies) whenever the stream
    came back from a save rather than from the server's memory: the state holds the first
    ``frames`` frames (``seq`` messages). A client resends every state-changing message it
    sent after that point, in order, and ignores their replies (it has them already)."""

    type: ClassVar[str] = "resumed"
    sender: ClassVar[str] = "server"
    frames: int
    seq: int | None = None
    reason: str | None = None
    saved_at: float | None = None


MESSAGES: dict[str, type[Message]] = {
    m.type: m for m in (Ready, Outputs, Reset, SnapshotMsg, Restore, End, Error, Resumed)
}


def encode(msg: Message) -> str:
    """One message as JSON text."""
    return json.dumps(msg.to_dict(), separators=(",", ":"))


def outputs_text(frames: int, outputs: dict[str, list], seq: int, saved: int | None) -> str:
    """``encode(Outputs(frames, outputs, seq, saved))``, without building the dataclass: the
    server's per-message hot path."""
    d: dict[str, Any] = {"type": "outputs", "frames": frames, "outputs": outputs, "seq": seq}
    if saved is not None:
        d["saved"] = saved
    return _COMPACT.encode(d)


def decode(text: str | bytes, sender: str) -> Message:
    """Parse a text message sent by ``sender`` (``"client"`` or ``"server"``).

    ``Done`` (sherpa-onnx's end marker) reads as :class:`End`. Raises
    :class:`~edgeseq.errors.ProtocolError` with ``reason`` ``bad_json`` or ``unknown_type``.
    """
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    if sender == "client" and text.strip() == DONE_TEXT:
        return End()
    try:
        d = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise _error(
            f'malformed JSON ({exc}); expected an object such as {{"type": "reset"}}', "bad_json"
        ) from None
    if not isinstance(d, dict) or not isinstance(d.get("type"), str):
        raise _error(
            f"expected a JSON object with a string 'type', got {str(text)[:80]!r}", "bad_json"
        )
    cls = MESSAGES.get(d["type"])
    if cls is None or cls.sender not in (sender, "both"):
        allowed = sorted(t for t, c in MESSAGES.items() if c.sender in (sender, "both"))
        raise _error(
            f"unknown message type {d['type'][:40]!r}; a {sender} sends one of {allowed}",
            "unknown_type",
        )
    try:
        return cls.from_dict(d)
    except ProtocolError as exc:
        raise _error(str(exc), "bad_json") from None


def _error(message: str, reason: str) -> ProtocolError:
    return ProtocolError(message, reason)


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: Any) -> bytes:
    if not isinstance(text, str):
        raise _error(f"expected base64 text in 'data', got {type(text).__name__}", "bad_snapshot")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _error(f"'data' is not valid base64 ({exc})", "bad_snapshot") from None


def token_subprotocol(token: str) -> str:
    """The subprotocol a browser offers to carry ``token`` (browsers cannot set headers)."""
    raw = base64.urlsafe_b64encode(token.encode()).decode("ascii").rstrip("=")
    return TOKEN_SUBPROTOCOL + raw
