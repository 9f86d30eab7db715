"""Integers a float dtype holds exactly: integer frames must reach the model unchanged.

A float with ``p`` bits of precision holds every integer up to ``2**p`` exactly (float16:
2,048; float32: 16,777,216; float64: 2**53) and, beyond that, only those whose odd part
still fits in ``p`` bits: the cast rounds 16,777,217 to 16,777,216 for a float32 input.
Integer frames fed to a float model are checked here before the cast; a value the cast
would change is refused (its exact value would be lost silently), while float frames
keep their usual rounding (a float64 cast to float32 loses precision by nature).

The check is cheap where it matters: one min and one max of the integer frames decide
that nothing can change (every value within ``±2**p``); only beyond that are the values
tested one by one, vectorised.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Inexact", "first_inexact", "inexact_bound", "inexact_problem", "largest_exact"]


def largest_exact(dtype: Any) -> int:
    """The largest ``n`` such that ``dtype`` holds every integer in ``[-n, n]`` exactly."""
    return 2 ** (np.finfo(dtype).nmant + 1)


class Inexact:
    """The first integer a cast to ``dtype`` would change: where, what, and what it becomes."""

    __slots__ = ("becomes", "dtype", "index", "value")

    def __init__(self, index: tuple[int, ...], value: int, becomes: float, dtype: np.dtype):
        self.index, self.value, self.becomes, self.dtype = index, value, becomes, dtype

    def message(self, where: str, what: str = "") -> str:
        """The refusal, naming the position as ``where`` (e.g. ``"index (3, 1)"``) and the
        cast's target as ``what`` (default: the model's input of that dtype)."""
        what = what or f"the model's {self.dtype.name} input"
        return (
            f"expected integer values that {what} holds exactly "
            f"({inexact_bound(self.dtype)}), got {self.value} at {where}, which "
            f"{inexact_problem(self.value, self.becomes, self.dtype)}"
        )


def inexact_bound(dtype: Any) -> str:
    """``"every integer up to ±16777216 = 2**24"`` for float32."""
    dt = np.dtype(dtype)
    limit = largest_exact(dt)
    return f"every integer up to ±{limit} = 2**{limit.bit_length() - 1}"


def inexact_problem(value: int, becomes: float, dtype: Any, floats: str = "") -> str:
    """What happens to ``value`` and what to do: the tail every refusal shares. ``floats``:
    how to pass float values instead (default: numpy frames of ``dtype``)."""
    dt = np.dtype(dtype)
    floats = floats or f"float frames (e.g. np.{dt.name})"
    return (
        f"the cast to {dt.name} changes to {becomes!r}, so the model would see another number. "
        f"Scale the feature (subtract an offset, divide by a unit) so its values stay within "
        f"±{largest_exact(dt)}, or pass {floats} to accept the rounding"
    )


def first_inexact(arr: np.ndarray, dtype: Any) -> Inexact | None:
    """The first value (C order) of integer array ``arr`` that the cast to float ``dtype``
    would change, or None (also for non-integer arrays)."""
    if arr.dtype.kind not in "iu" or not arr.size:
        return None
    dt = np.dtype(dtype)
    limit = largest_exact(dt)
    if arr.min() >= -limit and arr.max() <= limit:  # the hot path: nothing can change
        return None
    flat = arr.reshape(-1)
    # |v| as uint64 (|int64 min| wraps to 2**63 in the view: still the exact magnitude)
    if arr.dtype.kind == "u":
        mag = flat.astype(np.uint64)
    else:
        mag = np.abs(flat.astype(np.int64)).view(np.uint64)
    big = np.flatnonzero(mag > limit)
    m = mag[big]
    low = m & (~m + np.uint64(1))  # the lowest set bit: m = odd part x low
    top = np.uint64(min(int(np.finfo(dt).max), 2**64 - 1))  # float16 overflows past 65504
    fits = (m // low <= limit) & (m <= top)
    bad = big[~fits]
    if not len(bad):
        return None
    k = int(bad[0])
    value = int(flat[k])
    with np.errstate(over="ignore"):
        becomes = float(np.asarray(flat[k]).astype(dt))
    index = tuple(int(i) for i in np.unravel_index(k, arr.shape))
    return Inexact(index, value, becomes, dt)
