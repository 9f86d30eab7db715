"""The binary half of the ``edgeseq serve`` protocol: frames as wire bytes.

A binary message is ``T × F`` little-endian values of the dtype the server's ``ready``
names (:data:`WIRE_DTYPES`): :func:`encode_frames` writes one (the client),
:func:`decode_frames` reads and checks one (the server), each refusal a
:class:`~edgeseq.errors.ProtocolError` whose ``reason`` is one of the protocol's
``ERROR_REASONS``. Re-exported by :mod:`edgeseq.client.protocol`, its front door.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeseq.errors import ProtocolError
from edgeseq.exact import first_inexact

__all__ = ["WIRE_DTYPES", "check_finite", "decode_frames", "encode_frames"]

# wire dtype (named in `ready`) -> numpy dtype: float models take float32, token models int64
WIRE_DTYPES: dict[str, np.dtype] = {"float32": np.dtype("<f4"), "int64": np.dtype("<i8")}


def encode_frames(frames: Any, dtype: str, features: int) -> tuple[bytes, int]:
    """``frames`` ``[F]`` or ``[T, F]`` (token models: an id or ``[T]`` ids) as wire bytes;
    returns ``(bytes, T)``."""
    arr = np.asarray(frames)
    want = WIRE_DTYPES[dtype]
    if want.kind == "i" and arr.dtype.kind not in "iu":
        raise ProtocolError(
            f"expected integer token ids for this int64 model, got dtype {arr.dtype}. Encode "
            "text with the model's vocabulary first."
        )
    if arr.ndim == 0 or (arr.ndim == 1 and features != 1 and arr.shape[0] == features):
        arr = arr.reshape(1, -1)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[1] != features or arr.shape[0] == 0:
        raise ProtocolError(
            f"expected [{features}] (one frame) or [T, {features}] (T frames), got shape "
            f"{list(np.shape(frames))}. Check the feature count in the server's ready message."
        )
    if want.kind == "f":
        bad = first_inexact(arr, want)  # integer frames: their exact value must survive
        if bad is not None:
            raise ProtocolError(
                bad.message(f"index {bad.index}", f"the wire's {want.name}") + "; nothing was sent",
                "bad_frames",
            )
    return np.ascontiguousarray(arr, dtype=want).tobytes(), arr.shape[0]


def decode_frames(
    data: bytes, features: int, dtype: str, max_frames: int, finite: bool = True
) -> np.ndarray:
    """Wire bytes as ``(T, F)`` frames; a :class:`ProtocolError` with a ``reason`` if bad.

    ``finite=False`` leaves the NaN/Inf check to the caller (:func:`check_finite`; the
    server checks a whole batch of messages at once)."""
    want = WIRE_DTYPES[dtype]
    row = features * want.itemsize
    if not data or len(data) % row:
        raise ProtocolError(
            f"a frames message must hold a positive multiple of {row} bytes ({features} "
            f"{dtype} values of {want.itemsize} bytes per frame), got {len(data)} bytes",
            "bad_size",
        )
    t = len(data) // row
    if t > max_frames:
        raise ProtocolError(
            f"{t} frames in one message; this server takes at most {max_frames} "
            "(max_frames in ready). Send them in several messages",
            "too_many_frames",
        )
    arr = np.frombuffer(data, want).reshape(t, features)
    if finite:
        check_finite(arr)
    return arr


def check_finite(arr: np.ndarray) -> None:
    """Refuse ``(T, F)`` float frames holding NaN or Inf (reason ``non_finite``)."""
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        first = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise ProtocolError(
            f"frames hold NaN or Inf (first at frame {first[0]}, feature {first[1]}); one bad "
            "value would poison the stream's state. Clean the frames and send them again",
            "non_finite",
        )
