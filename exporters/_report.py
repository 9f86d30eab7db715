"""Structured verification results: one :class:`TensorDiff` per tensor and case.

The caller decides pass or fail by tolerance (``report.ok(atol=...)``); a shape or dtype
mismatch, a graph whose op types do not fit its mode, or a run that failed always fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgeseq.errors import VerificationError
from edgeseq.table import format_table

__all__ = ["TensorDiff", "VerifyReport", "diff"]


@dataclass(frozen=True)
class TensorDiff:
    """How one output or final state of one case compares with PyTorch.

    ``max_rel`` is ``max_abs`` divided by the reference's largest magnitude (a scale-free
    error that does not explode near zero).
    """

    case: str
    name: str
    kind: str  # "output" or "state"
    shape: tuple[int, ...]  # what the exported model gave (first row)
    expected_shape: tuple[int, ...]  # what PyTorch gave
    dtype: str
    expected_dtype: str
    max_abs: float
    max_rel: float

    @property
    def shape_ok(self) -> bool:
        return self.shape == self.expected_shape and self.dtype == self.expected_dtype

    def ok(self, atol: float = 1e-5, rtol: float | None = None) -> bool:
        """Shapes and dtypes agree and ``max_abs <= atol`` (or ``max_rel <= rtol`` if given)."""
        if not self.shape_ok or not np.isfinite(self.max_abs):
            return False
        return self.max_abs <= atol or (rtol is not None and self.max_rel <= rtol)


def diff(case: str, name: str, kind: str, pairs: list[tuple[np.ndarray, np.ndarray]]) -> TensorDiff:
    """Compare ``(got, expected)`` pairs (e.g. one per batch row) as one :class:`TensorDiff`."""
    got0, want0 = pairs[0]
    shape_ok = all(np.shape(g) == np.shape(w) for g, w in pairs)
    max_abs, scale = 0.0, 0.0
    if shape_ok:
        for g, w in pairs:
            g64, w64 = np.asarray(g, np.float64), np.asarray(w, np.float64)
            if g64.size:
                max_abs = max(max_abs, float(np.max(np.abs(g64 - w64))))
                scale = max(scale, float(np.max(np.abs(w64))))
    else:
        max_abs = float("inf")
    return TensorDiff(
        case=case,
        name=name,
        kind=kind,
        shape=tuple(np.shape(got0)),
        expected_shape=tuple(np.shape(want0)),
        dtype=str(np.asarray(got0).dtype),
        expected_dtype=str(np.asarray(want0).dtype),
        max_abs=max_abs,
        max_rel=max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf")),
    )


@dataclass
class VerifyReport:
    """Every comparison :func:`~edgeseq.exporters.verify` made, plus graph checks."""

    model: str
    mode: str = ""
    runtime: str = "onnxruntime"  # where the ONNX side ran
    diffs: list[TensorDiff] = field(default_factory=list)
    op_problems: list[str] = field(default_factory=list)  # op types that do not fit the mode
    errors: list[str] = field(default_factory=list)  # runs that failed outright
    notes: list[str] = field(default_factory=list)

    def merge(self, other: VerifyReport, prefix: str = "") -> None:
        """Add ``other``'s results (e.g. an encoder file's), names prefixed by ``prefix``."""
        tag = f"{prefix}: " if prefix else ""
        self.mode = self.mode or other.mode
        for d in other.diffs:
            self.diffs.append(TensorDiff(**{**d.__dict__, "name": f"{tag}{d.name}"}))
        self.op_problems += [tag + p for p in other.op_problems]
        self.errors += [tag + e for e in other.errors]
        self.notes += [tag + n for n in other.notes if tag + n not in self.notes]

    def failures(self, atol: float = 1e-5, rtol: float | None = None) -> list[str]:
        """One line per failed check; empty when everything passed."""
        lines = [f"op types: {p}" for p in self.op_problems] + list(self.errors)
        for d in self.diffs:
            if not d.shape_ok:
                lines.append(
                    f"{d.case}: {d.name} has shape {d.shape} {d.dtype}, PyTorch gives "
                    f"{d.expected_shape} {d.expected_dtype}"
                )
            elif not d.ok(atol, rtol):
                lines.append(f"{d.case}: {d.name} differs by {d.max_abs:.3g} (atol {atol:g})")
        return lines

    def ok(self, atol: float = 1e-5, rtol: float | None = None) -> bool:
        return not self.failures(atol, rtol)

    @property
    def max_abs(self) -> float:
        return max((d.max_abs for d in self.diffs), default=0.0)

    def worst(self) -> list[TensorDiff]:
        """Per tensor, the case with the largest difference (shape mismatches first)."""
        best: dict[str, TensorDiff] = {}
        for d in self.diffs:
            cur = best.get(d.name)
            key = (not d.shape_ok, d.max_abs)
            if cur is None or key > (not cur.shape_ok, cur.max_abs):
                best[d.name] = d
        return list(best.values())

    def table(self, atol: float = 1e-5, rtol: float | None = None, per_case: bool = False) -> str:
        """A text table: per tensor its worst case (``per_case=True``: every case)."""
        rows = [
            (
                d.name,
                d.kind,
                "x".join(map(str, d.shape)),
                d.dtype,
                d.max_abs,
                d.max_rel,
                "ok" if d.ok(atol, rtol) else "FAIL",
                d.case,
            )
            for d in (self.diffs if per_case else self.worst())
        ]
        head = ["tensor", "kind", "shape", "dtype", "max abs", "max rel", "ok", "case"]
        cases = len({d.case for d in self.diffs})
        lines = [
            f"{self.model} (mode {self.mode or '?'}, runtime {self.runtime}): "
            f"{len(self.diffs)} comparisons over "
            f"{cases} cases, tolerance atol={atol:g}" + (f", rtol={rtol:g}" if rtol else ""),
            format_table(head, rows),
        ]
        lines += [f"op types: {p}" for p in self.op_problems]
        lines += [f"error: {e}" for e in self.errors]
        lines += [f"note: {n}" for n in self.notes]
        lines.append("PASS" if self.ok(atol, rtol) else "FAIL")
        return "\n".join(lines)

    def raise_if_failed(self, atol: float = 1e-5, rtol: float | None = None) -> None:
        """Raise :class:`VerificationError` listing the failures (at most five)."""
        fails = self.failures(atol, rtol)
        if fails:
            more = f" (+{len(fails) - 5} more)" if len(fails) > 5 else ""
            raise VerificationError(
                f"{self.model} does not match PyTorch: " + "; ".join(fails[:5]) + more
            )
