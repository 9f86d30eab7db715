"""Snapshots: one stream's (or a whole pool's) state as self-describing bytes or a file.

The format is an ``.npz`` archive (never pickle) holding a JSON header and plain arrays::

    header      uint8 JSON: {"format": "edgeseq.snapshot", "version": 1, "kind": "stream"
                or "pool", "contract_hash": ..., "next_id": ..., "streams": [{"id", "frames_seen",
                "states": [state input names], "context": bool, "meta"}]}
    s{i}_{k}    stream i's state k, batch 1, e.g. (layers, 1, hidden)
    c{i}        stream i's left-context frames, (1, N, ...)
    p{i}        stream i's samples waiting for a window (windowed models), (n,)

Zip CRCs catch corrupt bytes; the contract hash ties a snapshot to its model. Reading
checks before it unpacks: the declared sizes (``save()`` stores arrays uncompressed, so an
archive declaring over 4x its bytes, a compression bomb, is refused), every header
field's type, and, when restoring into a model, each array's declared shape and dtype
against the model's. Files are written atomically (:func:`edgeseq.atomic.atomic_write`),
so a crash mid-write leaves the previous snapshot in place, and the next save to the same
path removes the crashed write's temp file.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeseq.atomic import atomic_write
from edgeseq.errors import SnapshotError
from edgeseq.runtime._snapread import FORMAT, FORMAT_VERSION, Layout, read_archive, same_model

if TYPE_CHECKING:
    from edgeseq.runtime._engine import Engine

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "PoolSnapshot",
    "Snapshot",
    "atomic_write",
    "check_snapshot",
    "pool_snapshot_for",
]


@dataclass
class Snapshot:
    """A copy of one stream's state; ``restore`` accepts it on a predictor of the same model."""

    contract_hash: str
    # the graph's state input name -> array with batch 1: a state carried in parts (one pair
    # per layer, the contract's part_of) is kept in its parts; StreamingPredictor.state
    # shows it whole
    states: dict[str, np.ndarray]
    frames_seen: int = 0
    context: np.ndarray | None = None  # (1, N, ...) left-context frames
    meta: dict[str, Any] = field(default_factory=dict)
    pending: np.ndarray | None = None  # (n,) samples not yet in a window

    def to_bytes(self) -> bytes:
        """Self-describing bytes (npz + JSON header); :meth:`from_bytes` reads them back."""
        return _pack("stream", self.contract_hash, [(None, self)], None)

    @classmethod
    def from_bytes(cls, data: bytes) -> Snapshot:
        """Read :meth:`to_bytes` output; raise :class:`SnapshotError` if it is corrupt."""
        _, _, streams, _ = _unpack(data, "stream")
        return streams[0][1]

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically to ``path``: a crash mid-write keeps the previous file."""
        return atomic_write(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Snapshot:
        return cls.from_bytes(_read(path))


@dataclass
class PoolSnapshot:
    """Every open stream of a :class:`~edgeseq.runtime.StreamPool`, by stream id."""

    contract_hash: str
    streams: dict[int, Snapshot]
    next_id: int = 0

    def to_bytes(self) -> bytes:
        items = [(sid, snap) for sid, snap in self.streams.items()]
        return _pack("pool", self.contract_hash, items, self.next_id)

    @classmethod
    def from_bytes(cls, data: bytes) -> PoolSnapshot:
        _, chash, streams, next_id = _unpack(data, "pool")
        return cls(chash, dict(streams), next_id)

    def save(self, path: str | os.PathLike) -> Path:
        return atomic_write(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | os.PathLike) -> PoolSnapshot:
        return cls.from_bytes(_read(path))


# ---------------------------------------------------------------------- format
def _pack(kind: str, chash: str, items: list[tuple[int | None, Snapshot]], next_id) -> bytes:
    arrays: dict[str, np.ndarray] = {}
    streams = []
    for i, (sid, snap) in enumerate(items):
        if snap.contract_hash != chash:
            raise SnapshotError(
                f"stream {sid}: snapshot of contract {snap.contract_hash} inside a pool "
                f"snapshot of contract {chash}; expected one model throughout."
            )
        for k, arr in enumerate(snap.states.values()):
            arrays[f"s{i}_{k}"] = np.ascontiguousarray(arr)
        if snap.context is not None:
            arrays[f"c{i}"] = np.ascontiguousarray(snap.context)
        if snap.pending is not None:
            arrays[f"p{i}"] = np.ascontiguousarray(snap.pending)
        streams.append(
            {
                "id": sid,
                "frames_seen": int(snap.frames_seen),
                "states": list(snap.states),
                "context": snap.context is not None,
                "pending": snap.pending is not None,
                "meta": snap.meta,
            }
        )
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "kind": kind,
        "contract_hash": chash,
        "next_id": next_id,
        "streams": streams,
    }
    try:
        text = json.dumps(header, sort_keys=True)
    except TypeError as exc:
        raise SnapshotError(
            f"snapshot meta must be JSON-serialisable ({exc}); expected str/number/list/dict "
            "values. Convert them before saving."
        ) from None
    buf = io.BytesIO()
    np.savez(buf, header=np.frombuffer(text.encode(), np.uint8), **arrays)
    return buf.getvalue()


def _unpack(
    data: Any, want: str, layout: Layout | None = None
) -> tuple[str, str, list[tuple[Any, Snapshot]], Any]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SnapshotError(
            f"expected snapshot bytes, got {type(data).__name__}. Use Snapshot.load(path) "
            "for a file."
        )
    chash, next_id, streams = read_archive(bytes(data), want, layout)
    snaps = [
        (s.id, Snapshot(chash, s.states, s.frames_seen, s.context, s.meta, s.pending))
        for s in streams
    ]
    return want, chash, snaps, next_id


def _read(path: str | os.PathLike) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SnapshotError(
            f"cannot read snapshot file {os.fspath(path)!r} ({exc.strerror or exc}); expected "
            "a file written by save(). Check the path."
        ) from None


# ---------------------------------------------------------------------- checks
def check_snapshot(
    snapshot: Any, engine: Engine, what: str = "restore()"
) -> tuple[Snapshot, list[np.ndarray], np.ndarray | None]:
    """Validate ``snapshot`` (or its bytes) for ``engine``; return it with its states (batch 1,
    in contract order) and context, as the model will receive them, or raise
    :class:`SnapshotError`. Bytes are checked against the model before any array is read."""
    if isinstance(snapshot, (bytes, bytearray, memoryview)):
        snapshot = _unpack(snapshot, "stream", Layout.of(engine))[2][0][1]
    if not isinstance(snapshot, Snapshot):
        raise SnapshotError(
            f"{what} expects a Snapshot (from snapshot()) or its bytes, got "
            f"{type(snapshot).__name__}."
        )
    same_model(snapshot.contract_hash, engine.hash)
    if type(snapshot.frames_seen) is not int or snapshot.frames_seen < 0:
        raise SnapshotError(
            f"snapshot frames_seen must be a non-negative int, got {snapshot.frames_seen!r}."
        )
    want = {p.input: (engine.state_shape(p, 1), p.dtype) for p in engine.pairs}
    given = snapshot.states if isinstance(snapshot.states, dict) else {}
    got = {k: (list(np.shape(v)), str(np.asarray(v).dtype)) for k, v in given.items()}
    if want != got:
        raise SnapshotError(
            f"snapshot states {got} do not match the model's {want}; expected a snapshot of "
            "this model. No state was changed."
        )
    states = [np.asarray(given[p.input]) for p in engine.pairs]
    if not all(np.isfinite(s).all() for s in states):
        raise SnapshotError("snapshot state contains NaN or Inf; refusing to load it.")
    ctx = snapshot.context
    ref = engine.initial_context(1)
    if (ref is None) != (ctx is None) or (ref is not None and np.shape(ctx) != ref.shape):
        raise SnapshotError(
            f"snapshot context {None if ctx is None else np.shape(ctx)} does not match this "
            f"predictor's context {None if ref is None else ref.shape}; expected the same "
            "context= setting as when it was taken."
        )
    with np.errstate(over="ignore", invalid="ignore"):  # checked below, as the model gets it
        context = None if ctx is None else np.array(ctx, dtype=ref.dtype)  # type: ignore[union-attr]
    if context is not None and context.dtype.kind == "f" and not np.isfinite(context).all():
        raise SnapshotError(
            f"snapshot context contains NaN or Inf (or values beyond {context.dtype}'s range); "
            "refusing to load it."
        )
    plan, pend = engine.windows, snapshot.pending
    if pend is not None:
        with np.errstate(over="ignore", invalid="ignore"):
            pend = np.array(pend, dtype=engine.frames.dtype)
        snapshot = replace(snapshot, pending=pend)  # as the model will get it
    if plan is not None and pend is not None:
        if pend.ndim != 1 or len(pend) >= plan.window or not np.isfinite(pend).all():
            raise SnapshotError(
                f"snapshot holds {pend.shape} pending samples; expected fewer than one "
                f"window ({plan.window}) of finite samples. No state was changed."
            )
    elif (plan is None) != (pend is None) and not (pend is not None and len(pend) == 0):
        raise SnapshotError(
            f"snapshot {'has' if pend is not None else 'has no'} pending window samples; this "
            f"predictor {'buffers windows' if plan else 'takes no window'}. Expected the same "
            "window= setting as when it was taken. No state was changed."
        )
    return snapshot, states, context


def pool_snapshot_for(data: Any, engine: Engine) -> PoolSnapshot:
    """A :class:`PoolSnapshot` from bytes, checked against ``engine``'s model before any
    array is read."""
    _, chash, streams, next_id = _unpack(data, "pool", Layout.of(engine))
    return PoolSnapshot(chash, dict(streams), next_id)
