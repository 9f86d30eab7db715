"""Check one stream's frames against the contract before anything runs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from operator import attrgetter
from typing import Any

import numpy as np

from edgeseq.contract import Contract
from edgeseq.errors import InputError
from edgeseq.exact import first_inexact

__all__ = ["FrameSpec", "quiet_dot"]

_ONE_AXIS = {1}

#: ``a·b`` of two 1-D float arrays, used as a finiteness test (NaN and ±Inf propagate, and
#: finite values too large for it overflow to Inf: the caller then takes the full check).
#: ``np.vdot`` runs the same BLAS dot as ``ndarray.dot`` but does not turn the
#: floating-point flags into RuntimeWarnings, which ``dot`` does (overflow, Inf - Inf): a
#: refused or rechecked frame must not print anything. Errstate around ``dot`` costs ~2 µs
#: per call; this ~0.3 µs (tests/test_frames_exact.py proves it stays silent).
quiet_dot = np.vdot
_dtype, _ndim, _shape = attrgetter("dtype"), attrgetter("ndim"), attrgetter("shape")


class FrameSpec:
    """What one frame of a stream looks like: trailing shape and dtype.

    Feature models (``(batch, time, F)``) take ``[F]`` (one frame) or ``[T, F]`` (a chunk);
    token models (``(batch, time)`` int) take a scalar id or ``[T]`` ids; raw-sample models
    (``(batch, time)`` float) take a scalar or ``[T]`` samples.
    """

    def __init__(self, contract: Contract, trailing: tuple[int | str, ...] | None = None) -> None:
        spec = contract.frames
        self.name = spec.name
        self.dtype = np.dtype(spec.dtype)
        self.is_int = self.dtype.kind in "iu"
        if trailing is None:  # per-frame shape: the axes that are neither batch nor time
            lead = (spec.batch_axis, spec.time_axis)
            trailing = tuple(d for i, d in enumerate(spec.shape) if i not in lead)
        self.trailing: tuple[int | str, ...] = trailing
        # symbolic trailing axes (third-party models) take whatever size the first call has
        self.trailing_ints = tuple(d if isinstance(d, int) else 0 for d in self.trailing)
        self.fixed = all(isinstance(d, int) for d in self.trailing)
        prep = contract.preprocessing
        self.mean = np.asarray(prep.mean, np.float32) if prep.mean is not None else None
        self.std = np.asarray(prep.std, np.float32) if prep.std is not None else None
        self.scaled = self.mean is not None or self.std is not None
        # integer frames are cast to this first (the scaling runs in float32): every value
        # must survive that cast exactly (edgeseq/exact.py)
        self.cast = np.dtype(np.float32) if self.scaled else self.dtype
        self.vocab_size = len(prep.vocab) if prep.vocab else None
        self.one_shape = self.trailing_ints  # the shape of one frame, for the fast path
        self._small = len(self.one_shape) == 1 and self.one_shape[0] <= 16
        # what joined() compares whole sets of frames against
        self._dtypes, self._shapes = {self.dtype}, {self.one_shape}
        self._lens = {self.one_shape[0]} if len(self.one_shape) == 1 else set()

    def describe(self) -> str:
        dims = ", ".join(str(d) for d in self.trailing)
        one = f"[{dims}]" if dims else "a scalar"
        chunk = f"[T, {dims}]" if dims else "[T]"
        kind = "integer token ids" if self.is_int else f"{self.dtype.name} values"
        return f"{kind} shaped {one} (one frame) or {chunk} (a chunk of T frames)"

    def fast(self, frames: Any, own: bool = False) -> np.ndarray | None:
        """One well-formed frame ready to feed, or None to take the full check.

        The hot path of per-frame streaming: an ndarray of the exact dtype and shape whose
        values, as the model receives them (after input scaling), are finite: the sum of a
        few values (or ``x·x`` of more, by :data:`quiet_dot`) is finite only if every value
        is (NaN and Inf propagate, without floating-point warnings); values so large that
        it overflows take the full check. ``own``: the
        result never shares memory with ``frames`` (copied before it is checked, so a
        caller that reuses its buffer cannot change what was checked).
        """
        if (
            type(frames) is not np.ndarray
            or frames.dtype != self.dtype
            or frames.shape != self.one_shape
            or self.is_int
            or not self.fixed
        ):
            return None
        if self.scaled:
            frames = self._scale(frames)  # a new array: owned
        elif own:
            frames = frames.copy()
        if self._small:  # a Python sum of a few floats beats a BLAS call's overhead
            if not math.isfinite(sum(frames.tolist())):
                return None
        elif frames.ndim == 1:
            if not math.isfinite(quiet_dot(frames, frames)):
                return None
        elif not np.isfinite(frames).all():
            return None
        return frames

    def fast_chunk(self, frames: Any) -> np.ndarray | None:
        """A chunk ``[T, ...]`` of the exact dtype and frame shape, scaled as the model takes
        it, or None to take the full check. Its values are NOT checked here: the caller
        writes them where the model reads them and checks them there, taking the full
        check (which names the bad value) if any is not finite."""
        if (
            type(frames) is not np.ndarray
            or frames.dtype != self.dtype
            or frames.shape[1:] != self.one_shape
            or frames.ndim != len(self.one_shape) + 1
            or not frames.shape[0]
            or self.is_int
            or not self.fixed
        ):
            return None
        return self._scale(frames) if self.scaled else frames

    def joined(self, values: Sequence[Any]) -> np.ndarray | None:
        """Many streams' single frames as one array ``(n, *frame)``, or None to check each
        one (:meth:`fast`, :meth:`check`), which also names the stream at fault.

        The many-streams hot path: dtype and shape are compared for all frames at once
        (C-level maps into sets), and the frames are copied by one ``bytes.join`` (which
        refuses anything that is not a C-contiguous buffer). Only arrays of the exact dtype
        and frame shape qualify, as for :meth:`fast`. The result is read-only, NOT scaled
        and NOT checked for finite values: the caller does both where the model reads it
        (:meth:`finite` does them on the array).
        """
        if self.is_int or not self.fixed or not values:
            return None
        try:
            if set(map(_dtype, values)) != self._dtypes:
                return None
            if self._lens:  # one axis: ndim and length (a shape tuple per frame costs more)
                if set(map(_ndim, values)) != _ONE_AXIS or set(map(len, values)) != self._lens:
                    return None
            elif set(map(_shape, values)) != self._shapes:
                return None
            data = b"".join(values)  # refuses what is not a C-contiguous buffer
        except (AttributeError, BufferError, TypeError, ValueError):  # not an array
            return None
        return np.frombuffer(data, self.dtype).reshape(len(values), *self.one_shape)

    def finite(self, x: np.ndarray) -> np.ndarray | None:
        """Frames ``x`` (from :meth:`joined`) scaled as the model receives them, or None if
        any value is then not finite (or so large that the check overflows)."""
        if self.scaled:
            x = self._scale(x)
        flat = x.reshape(-1)
        if not math.isfinite(quiet_dot(flat, flat)):  # NaN/Inf propagate; overflow: check each
            return None
        return x

    def batch(self, values: Sequence[Any]) -> np.ndarray | None:
        """:meth:`joined` then :meth:`finite`: checked frames ``(n, *frame)``, or None."""
        x = self.joined(values)
        return None if x is None else self.finite(x)

    def scale(self, arr: np.ndarray) -> np.ndarray:
        """``arr`` as the model receives it: the contract's input scaling, if any, applied."""
        return self._scale(arr) if self.scaled else arr

    def _scale(self, arr: np.ndarray) -> np.ndarray:
        if self.mean is not None:
            arr = arr - self.mean
        if self.std is not None:
            arr = arr / self.std
        return arr.astype(self.dtype, copy=False)

    def check(self, frames: Any, own: bool = False) -> tuple[np.ndarray, bool]:
        """Return ``(chunk [T, ...], single)``; raise :class:`InputError` on anything wrong.

        Values are checked as the model will receive them: after the cast to its dtype and
        the contract's input scaling. ``own``: the chunk never shares memory with
        ``frames`` (the copy is made before the values are checked).
        """
        try:
            arr = np.asarray(frames)
        except Exception as exc:  # ragged lists and the like
            raise InputError(
                f"expected {self.describe()}, got something that is not an array ({exc}). "
                "Pass a numpy array or a rectangular list of numbers."
            ) from None
        kind = arr.dtype.kind
        if self.is_int:
            if kind not in "iu":
                raise InputError(
                    f"expected {self.describe()}, got dtype {arr.dtype}. Encode text with "
                    "the model's vocabulary first (e.g. Vocabulary.encode)."
                )
        elif kind not in "fiu":
            raise InputError(
                f"expected {self.describe()}, got dtype {arr.dtype}. Convert with "
                f"np.asarray(frames, dtype=np.{self.dtype.name})."
            )
        rank = len(self.trailing)
        if arr.ndim == rank:
            single, arr = True, arr[None]
        elif arr.ndim == rank + 1:
            single = False
        else:
            raise InputError(
                f"expected {self.describe()}, without a batch axis; got shape {arr.shape} "
                f"(rank {arr.ndim}). Pass one stream's frames per call; for many streams "
                "use StreamPool.step({id: frames})."
            )
        for i, want in enumerate(self.trailing):
            if isinstance(want, int) and arr.shape[i + 1] != want:
                raise InputError(
                    f"expected {want} values per frame ({self.describe()}), got "
                    f"{arr.shape[i + 1]} (shape {arr.shape[int(single) :]}). Check the "
                    "feature count and order."
                )
        if arr.shape[0] == 0:
            raise InputError(
                f"expected at least one frame ({self.describe()}), got zero (shape "
                f"{arr.shape[1:] if single else arr.shape}). Skip the call instead."
            )
        if own and np.may_share_memory(arr, frames):
            arr = arr.copy()  # checked below is what runs, whatever the caller does next
        if self.is_int:
            return self._tokens(arr), single
        if kind in "iu":
            self._exact(arr, single)
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is refused below
            x = arr.astype(np.float32, copy=False) if self.scaled else arr
            x = np.ascontiguousarray(self._scale(x) if self.scaled else x, dtype=self.dtype)
        if not np.isfinite(x).all():
            raise self._not_finite(arr, x, single)
        return x, single

    def _exact(self, arr: np.ndarray, single: bool) -> None:
        """Refuse integer frames whose value the cast to :attr:`cast` would change."""
        bad = first_inexact(arr, self.cast)
        if bad is None:
            return
        where = bad.index[1:] if single else bad.index
        what = (
            "float32, in which the contract's input scaling runs,"
            if self.scaled
            else f"the model's {self.cast.name} input"
        )
        raise InputError(f"{bad.message(f'index {where}', what)}; the stream's state is unchanged.")

    def _tokens(self, arr: np.ndarray) -> np.ndarray:
        lo, hi = arr.min(), arr.max()
        if self.vocab_size is not None and (lo < 0 or hi >= self.vocab_size):
            raise InputError(
                f"expected token ids in [0, {self.vocab_size}), got values from {lo} to {hi}. "
                "Encode with the model's vocabulary."
            )
        info = np.iinfo(self.dtype)
        if lo < info.min or hi > info.max:
            raise InputError(
                f"expected token ids that fit the model's {self.dtype.name}, got values from "
                f"{lo} to {hi}. Encode with the model's vocabulary."
            )
        return np.ascontiguousarray(arr, dtype=self.dtype)

    def _not_finite(self, raw: np.ndarray, x: np.ndarray, single: bool) -> InputError:
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
        where = bad[1:] if single else bad
        value = raw[bad].item()
        if math.isfinite(value):
            steps = " and the model's input scaling" if self.scaled else ""
            got = (
                f"{value!r}, which becomes {x[bad].item()!r} after the cast to {self.dtype.name}"
                f"{steps} (first at index {where})"
            )
        else:
            got = f"NaN or Inf (first at index {where})"
        return InputError(
            f"expected finite {self.describe()}, got {got}; one bad value would poison the "
            "stream's state. Clean or impute the frames first; the stream's state is "
            "unchanged."
        )
