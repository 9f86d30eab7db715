"""Snapshots: one stream's (or a whole pool's) state as self-describing bytes or a file.

The format is an ``.npz`` archive (never pickle) holding a JSON header and plain arrays::

    header      uint8 JSON: {"format": "edgeseq.snapshot", "version": 1, "kind": "stream"
                or "pool", "contract_hash": ..., "next_id": ..., "streams": [{"id", "frames_seen",
                "states": [state input names], "context": bool, "meta"}]}
    s{i}_{k}    stream i's state k, batch 1, e.g. (layers, 1, hidden)
    c{i}        stream i's left-context frames, (1, N, ...)
    p{i}        stream i's samples waiting for a window (windowed models), (n,)

Zip CRCs catch corrupt bytes; the contract hash ties a snapshot to its model. Files are
written atomically (temp file in the same folder, fsync, rename, fsync the folder), so a
crash mid-write leaves the previous snapshot in place.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeseq.errors import SnapshotError

if TYPE_CHECKING:
    from edgeseq.runtime._engine import Engine

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "PoolSnapshot",
    "Snapshot",
    "atomic_write",
    "check_snapshot",
]

FORMAT = "edgeseq.snapshot"
FORMAT_VERSION = 1
_CORRUPT = (
    "expected bytes written by Snapshot.to_bytes()/PoolSnapshot.to_bytes() or a file written "
    "by save(). Use an intact copy (files written by save() are replaced atomically), or "
    "start the stream afresh with reset()."
)


@dataclass
class Snapshot:
    """A copy of one stream's state; ``restore`` accepts it on a predictor of the same model."""

    contract_hash: str
    states: dict[str, np.ndarray]  # state input name -> array with batch 1
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
        return cls(chash, {int(sid): snap for sid, snap in streams}, int(next_id or 0))

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


def _unpack(data: Any, want: str) -> tuple[str, str, list[tuple[Any, Snapshot]], Any]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SnapshotError(
            f"expected snapshot bytes, got {type(data).__name__}. Use Snapshot.load(path) "
            "for a file."
        )
    try:
        with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as z:
            header = json.loads(bytes(z["header"]).decode())
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise SnapshotError(
                    f"the bytes are an npz archive but not an {FORMAT!r}; {_CORRUPT}"
                )
            if header.get("version") != FORMAT_VERSION:
                raise SnapshotError(
                    f"snapshot format version {header.get('version')!r}; this edgeseq reads "
                    f"version {FORMAT_VERSION}. Restore it with the edgeseq that wrote it."
                )
            if header.get("kind") != want:
                other = "PoolSnapshot" if header.get("kind") == "pool" else "Snapshot"
                raise SnapshotError(
                    f"this is a {header.get('kind')!r} snapshot, expected a {want!r} one; "
                    f"read it with {other}.from_bytes/load."
                )
            chash = str(header["contract_hash"])
            streams = []
            for i, rec in enumerate(header["streams"]):
                states = {n: z[f"s{i}_{k}"] for k, n in enumerate(rec["states"])}
                ctx = z[f"c{i}"] if rec["context"] else None
                pend = z[f"p{i}"] if rec.get("pending") else None
                snap = Snapshot(
                    chash, states, int(rec["frames_seen"]), ctx, dict(rec["meta"]), pend
                )
                streams.append((rec["id"], snap))
    except SnapshotError:
        raise
    except Exception as exc:  # BadZipFile, bad CRC, missing keys, bad JSON, truncation...
        raise SnapshotError(
            f"snapshot bytes are corrupt or not an edgeseq snapshot ({type(exc).__name__}: "
            f"{str(exc)[:200]}); {_CORRUPT}"
        ) from None
    if want == "stream" and len(streams) != 1:
        raise SnapshotError(f"a stream snapshot holds {len(streams)} streams; {_CORRUPT}")
    return want, chash, streams, header.get("next_id")


def _read(path: str | os.PathLike) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SnapshotError(
            f"cannot read snapshot file {os.fspath(path)!r} ({exc.strerror or exc}); expected "
            "a file written by save(). Check the path."
        ) from None


def atomic_write(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    Temp file in the same folder, fsync, ``os.replace``, then fsync the folder so the
    rename itself survives a power cut.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    import tempfile  # lazily: only snapshot writers pay for it (and for shutil, random)

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # POSIX: make the rename durable
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


# ---------------------------------------------------------------------- checks
def check_snapshot(
    snapshot: Any, engine: Engine, what: str = "restore()"
) -> tuple[Snapshot, list[np.ndarray], np.ndarray | None]:
    """Validate ``snapshot`` (or its bytes) for ``engine``; return it with its states (batch 1,
    in contract order) and context, or raise :class:`SnapshotError`."""
    if isinstance(snapshot, (bytes, bytearray, memoryview)):
        snapshot = Snapshot.from_bytes(snapshot)
    if not isinstance(snapshot, Snapshot):
        raise SnapshotError(
            f"{what} expects a Snapshot (from snapshot()) or its bytes, got "
            f"{type(snapshot).__name__}."
        )
    if snapshot.contract_hash != engine.hash:
        raise SnapshotError(
            f"snapshot belongs to a model with contract {snapshot.contract_hash}; this model's "
            f"contract is {engine.hash}. Restore it on a predictor or pool of the model that "
            "took it; no state was changed."
        )
    want = {p.input: (engine.state_shape(p, 1), p.dtype) for p in engine.pairs}
    got = {k: (list(np.shape(v)), str(np.asarray(v).dtype)) for k, v in snapshot.states.items()}
    if want != got:
        raise SnapshotError(
            f"snapshot states {got} do not match the model's {want}; expected a snapshot of "
            "this model. No state was changed."
        )
    states = [np.asarray(snapshot.states[p.input]) for p in engine.pairs]
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
    context = None if ctx is None else np.array(ctx, dtype=ref.dtype)  # type: ignore[union-attr]
    plan, pend = engine.windows, snapshot.pending
    if plan is not None and pend is not None:
        if np.ndim(pend) != 1 or len(pend) >= plan.window or not np.isfinite(pend).all():
            raise SnapshotError(
                f"snapshot holds {np.shape(pend)} pending samples; expected fewer than one "
                f"window ({plan.window}) of finite samples. No state was changed."
            )
    elif (plan is None) != (pend is None) and not (pend is not None and len(pend) == 0):
        raise SnapshotError(
            f"snapshot {'has' if pend is not None else 'has no'} pending window samples; this "
            f"predictor {'buffers windows' if plan else 'takes no window'}. Expected the same "
            "window= setting as when it was taken. No state was changed."
        )
    return snapshot, states, context
