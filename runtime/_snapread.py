"""Reading snapshot archives: everything is checked before an array is unpacked.

The archive is a zip of ``.npy`` members (see :mod:`edgeseq.runtime.snapshot` for the
format). Before anything is unpacked: the members' declared sizes (at most 4x the bytes
given, since ``save()`` stores arrays uncompressed: a compression bomb is refused), every
header field's type, and each member's npy header (shape, dtype, and that its declared
size matches); when restoring into a model (:class:`Layout`), shapes and dtypes must be
the model's. Reads stop at the declared sizes, and reading to the end checks the CRC.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from edgeseq.errors import SnapshotError

if TYPE_CHECKING:
    import zipfile

    from edgeseq.runtime._engine import Engine

__all__ = [
    "CORRUPT",
    "FORMAT",
    "FORMAT_VERSION",
    "Archive",
    "Layout",
    "Stream",
    "read_archive",
    "same_model",
]

FORMAT = "edgeseq.snapshot"
FORMAT_VERSION = 1
CORRUPT = (
    "expected bytes written by Snapshot.to_bytes()/PoolSnapshot.to_bytes() or a file written "
    "by save(). Use an intact copy (files written by save() are replaced atomically), or "
    "start the stream afresh with reset()."
)


class Stream(NamedTuple):
    """One stream of an archive, as read."""

    id: int | None
    states: dict[str, np.ndarray]
    frames_seen: int
    context: np.ndarray | None
    meta: dict[str, Any]
    pending: np.ndarray | None


class Archive(NamedTuple):
    contract_hash: str
    next_id: int | None
    streams: list[Stream]


_HEADER_MAX = 64 << 20  # bytes of JSON header at most
_RATIO = 4  # declared unpacked size at most this times the bytes given (save() stores, no zip)


@dataclass(frozen=True)
class Layout:
    """The arrays a model's snapshot must hold: checked before any array is unpacked."""

    contract_hash: str
    states: dict[str, tuple[tuple[int, ...], str]]  # state input -> (shape, dtype)
    context: tuple[tuple[int, ...], str] | None
    window: int  # pending samples are fewer than this (1: none, the model takes no window)

    @classmethod
    def of(cls, engine: Engine) -> Layout:
        states = {p.input: (tuple(engine.state_shape(p, 1)), p.dtype) for p in engine.pairs}
        ref = engine.initial_context(1)
        window = engine.windows.window if engine.windows is not None else 1
        ctx = None if ref is None else (ref.shape, ref.dtype.name)
        return cls(engine.hash, states, ctx, window)


def _check_sizes(z: zipfile.ZipFile, given: int) -> None:
    """Refuse archives that declare far more unpacked bytes than they hold (a deflate bomb)
    before unpacking anything; reads stop at the declared sizes."""
    declared = sum(info.file_size for info in z.infolist())
    if declared > _RATIO * given + (1 << 20):
        raise SnapshotError(
            f"snapshot declares {declared} unpacked bytes in {given} bytes; snapshots written "
            f"by save() are stored uncompressed, so this is not one (a compression bomb?). "
            f"{CORRUPT}"
        )


def _header(z: zipfile.ZipFile) -> dict[str, Any]:
    shape, dtype = _member(z, "header", None, read=False)  # type: ignore[misc]
    if dtype != np.uint8 or len(shape) != 1 or shape[0] > _HEADER_MAX:
        raise SnapshotError(f"the snapshot header is not a JSON text; {CORRUPT}")
    header = json.loads(bytes(_member(z, "header", None)).decode())  # type: ignore[arg-type]
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise SnapshotError(f"the bytes are an npz archive but not an {FORMAT!r}; {CORRUPT}")
    return header


def _records(header: dict[str, Any], want: str) -> tuple[str, Any, list[dict[str, Any]]]:
    """The header's fields, each checked for type: nothing crafted reaches the pool."""
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
    chash, next_id = header.get("contract_hash"), header.get("next_id")
    records = header.get("streams")
    if not isinstance(chash, str) or not isinstance(records, list):
        raise _bad_field("contract_hash/streams", "a string and a list", (chash, records))
    if want == "stream":
        if len(records) != 1:
            raise SnapshotError(f"a stream snapshot holds {len(records)} streams; {CORRUPT}")
    elif not _count(next_id):
        raise _bad_field("next_id", "a non-negative int", next_id)
    seen: set[int] = set()
    for rec in records:
        if not isinstance(rec, dict):
            raise _bad_field("streams[]", "an object", rec)
        sid = rec.get("id")
        if want == "pool" and (not _count(sid) or sid in seen):
            raise _bad_field("id", "a distinct non-negative int stream id", sid)
        if want == "stream" and sid is not None:
            raise _bad_field("id", "null in a stream snapshot", sid)
        seen.add(sid)
        names = rec.get("states")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise _bad_field("states", "a list of state input names", names)
        if len(set(names)) != len(names):
            raise _bad_field("states", "distinct state input names", names)
        if not _count(rec.get("frames_seen")):
            raise _bad_field("frames_seen", "a non-negative int", rec.get("frames_seen"))
        if not isinstance(rec.get("context"), bool) or not isinstance(rec.get("meta"), dict):
            raise _bad_field("context/meta", "a bool and an object", rec.get("context"))
        if not isinstance(rec.get("pending", False), bool):
            raise _bad_field("pending", "a bool", rec.get("pending"))
    return chash, next_id, records


def _count(v: Any) -> bool:
    return type(v) is int and v >= 0


def _bad_field(name: str, expected: str, got: Any) -> SnapshotError:
    return SnapshotError(
        f"snapshot header field {name!r}: expected {expected}, got {str(got)[:80]}; {CORRUPT}"
    )


def _member(
    z: zipfile.ZipFile,
    key: str,
    want: tuple[tuple[int, ...], str] | int | None,
    read: bool = True,
) -> Any:
    """Member ``key``: its npy header's ``(shape, dtype)`` (``read=False``), or its array.

    The declared shape and dtype are checked against ``want`` (the model's ``(shape,
    dtype)``, or for pending samples the window: 1-D and shorter) and against the member's
    declared size before any data is read.
    """
    info = z.getinfo(f"{key}.npy")
    with z.open(info) as f:
        major, _ = np.lib.format.read_magic(f)
        if major == 1:
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        shape = tuple(shape)
        if dtype.hasobject:
            raise SnapshotError(f"snapshot array {key!r} holds Python objects; {CORRUPT}")
        if isinstance(want, int) and (len(shape) != 1 or shape[0] >= want):
            raise SnapshotError(
                f"snapshot holds {list(shape)} pending samples; this model takes windows of "
                f"{want if want > 1 else 'no'} samples, so fewer than one window is expected. "
                "No state was changed."
            )
        if isinstance(want, tuple) and (shape != tuple(want[0]) or dtype.name != want[1]):
            raise SnapshotError(
                f"snapshot array {key!r} is {dtype.name} {list(shape)}; this model's is "
                f"{want[1]} {list(want[0])}. Expected a snapshot of this model; no state was "
                "changed."
            )
        nbytes = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
        if info.file_size != f.tell() + nbytes:
            raise SnapshotError(
                f"snapshot array {key!r} declares {list(shape)} {dtype.name} but holds "
                f"{info.file_size - f.tell()} bytes; {CORRUPT}"
            )
        if not read:
            return shape, dtype
        raw = f.read(nbytes + 1)  # reading to the end checks the CRC
    if len(raw) != nbytes:
        raise SnapshotError(f"snapshot array {key!r} is truncated; {CORRUPT}")
    arr = np.frombuffer(raw, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return arr.copy()  # writable, owning its memory


def _stream(z: zipfile.ZipFile, i: int, rec: dict[str, Any], layout: Layout | None) -> Stream:
    """Stream ``i`` of the archive; with ``layout``, every array's declared shape and dtype
    are checked against the model's before any is unpacked."""
    keys = {f"s{i}_{k}": n for k, n in enumerate(rec["states"])}
    shapes: dict[str, Any] = dict.fromkeys(keys)
    if layout is not None:
        if set(rec["states"]) != set(layout.states):
            raise SnapshotError(
                f"snapshot states {sorted(rec['states'])} do not match the model's "
                f"{sorted(layout.states)}; expected a snapshot of this model. No state was "
                "changed."
            )
        shapes = {k: layout.states[n] for k, n in keys.items()}
        if rec["context"] != (layout.context is not None):
            raise SnapshotError(
                f"snapshot context {'present' if rec['context'] else 'absent'} does not match "
                f"this predictor's context {layout.context and list(layout.context[0])}; "
                "expected the same context= setting as when it was taken."
            )
    if rec["context"]:
        shapes[f"c{i}"] = layout.context if layout is not None else None
    if rec.get("pending"):  # samples short of a window: 1-D, fewer than one window
        shapes[f"p{i}"] = layout.window if layout is not None else None
    for key, want in shapes.items():  # headers only: nothing unpacked yet
        _member(z, key, want, read=False)
    arrays = {key: _member(z, key, want) for key, want in shapes.items()}
    states = {n: arrays[k] for k, n in keys.items()}
    return Stream(
        rec["id"], states, rec["frames_seen"], arrays.get(f"c{i}"), rec["meta"], arrays.get(f"p{i}")
    )


def read_archive(data: bytes, want: str, layout: Layout | None = None) -> Archive:
    """The snapshot archive ``data`` of kind ``want`` ("stream" or "pool"), checked as the
    module docstring says; raise :class:`SnapshotError` for anything else."""
    import zipfile  # lazily: it loads bz2, lzma and shutil, ~1 MB a device need not pay

    try:
        with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
            _check_sizes(z, len(data))
            chash, next_id, records = _records(_header(z), want)
            if layout is not None:
                same_model(chash, layout.contract_hash)
            streams = [_stream(z, i, rec, layout) for i, rec in enumerate(records)]
    except SnapshotError:
        raise
    except Exception as exc:  # BadZipFile, bad CRC, missing keys, bad JSON, truncation...
        raise SnapshotError(
            f"snapshot bytes are corrupt or not an edgeseq snapshot ({type(exc).__name__}: "
            f"{str(exc)[:200]}); {CORRUPT}"
        ) from None
    return Archive(chash, next_id, streams)


def same_model(chash: str, engine_hash: str) -> None:
    if chash != engine_hash:
        raise SnapshotError(
            f"snapshot belongs to a model with contract {chash}; this model's contract is "
            f"{engine_hash}. Restore it on a predictor or pool of the model that took it; no "
            "state was changed."
        )
