"""Check one stream's frames against the contract before anything runs."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeseq.contract import Contract
from edgeseq.errors import InputError

__all__ = ["FrameSpec"]


class FrameSpec:
    """What one frame of a stream looks like: trailing shape and dtype kind.

    Float models take ``[F]`` (one frame) or ``[T, F]`` (a chunk); token models take a
    scalar id or ``[T]`` ids; raw-sample models (``(batch, time)`` float) take a scalar
    or ``[T]`` samples.
    """

    def __init__(self, contract: Contract) -> None:
        spec = contract.frames
        self.name = spec.name
        self.dtype = np.dtype(spec.dtype)
        self.is_int = self.dtype.kind in "iu"
        self.trailing: tuple[int | str, ...] = tuple(spec.shape[2:])  # per-frame shape
        prep = contract.preprocessing
        self.mean = np.asarray(prep.mean, np.float32) if prep.mean is not None else None
        self.std = np.asarray(prep.std, np.float32) if prep.std is not None else None
        self.vocab_size = len(prep.vocab) if prep.vocab else None

    def describe(self) -> str:
        dims = ", ".join(str(d) for d in self.trailing)
        one = f"[{dims}]" if dims else "a scalar"
        chunk = f"[T, {dims}]" if dims else "[T]"
        return f"{self.dtype.name} frames shaped {one} (one frame) or {chunk} (a chunk)"

    def check(self, frames: Any) -> tuple[np.ndarray, bool]:
        """Return ``(chunk [T, ...], single)``; raise :class:`InputError` on anything wrong."""
        try:
            arr = np.asarray(frames)
        except Exception as exc:  # ragged lists and the like
            raise InputError(
                f"frames could not be read as an array ({exc}); expected {self.describe()}."
            ) from None
        kind = arr.dtype.kind
        if self.is_int:
            if kind not in "iu":
                raise InputError(
                    f"frames have dtype {arr.dtype}; this model takes integer token ids "
                    f"({self.describe()}). Encode text with the model's vocabulary first."
                )
        elif kind not in "fiu" or kind == "b":
            raise InputError(
                f"frames have dtype {arr.dtype}; expected {self.describe()}. Convert with "
                "np.asarray(frames, dtype=np.float32)."
            )
        rank = len(self.trailing)
        if arr.ndim == rank:
            single, arr = True, arr[None]
        elif arr.ndim == rank + 1:
            single = False
        else:
            raise InputError(
                f"frames have shape {arr.shape} (rank {arr.ndim}); expected {self.describe()}, "
                "without a batch axis. For many streams use StreamPool."
            )
        for i, want in enumerate(self.trailing):
            if isinstance(want, int) and arr.shape[i + 1] != want:
                raise InputError(
                    f"frames have {arr.shape[i + 1]} values on axis {i + 1 - int(single)} "
                    f"(shape {arr.shape[int(single) :]}); this model expects {want} "
                    f"({self.describe()})."
                )
        if arr.shape[0] == 0:
            raise InputError(f"got zero frames (shape {arr.shape}); pass at least one frame.")
        if self.is_int:
            arr = arr.astype(self.dtype, copy=False)
            if self.vocab_size is not None and (arr.min() < 0 or arr.max() >= self.vocab_size):
                raise InputError(
                    f"token ids must be in [0, {self.vocab_size}); got values from {arr.min()} "
                    f"to {arr.max()}. Encode with the model's vocabulary."
                )
            return arr, single
        arr = arr.astype(np.float32, copy=False)
        if not np.isfinite(arr).all():
            bad = np.argwhere(~np.isfinite(arr))[0]
            raise InputError(
                f"frames contain NaN or Inf (first at index {tuple(int(i) for i in bad)}); "
                "the model's state would be poisoned. Clean or impute the frames first."
            )
        if self.mean is not None:
            arr = arr - self.mean
        if self.std is not None:
            arr = arr / self.std
        return np.ascontiguousarray(arr, dtype=np.float32), single
