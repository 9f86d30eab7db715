"""The benchmark targets (issues 6, 14, 20 and partial pool steps): a figure and a limit each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from edgeseq.bench._partial import worst_partial_ratio

__all__ = ["NA", "RECURRENT_OPS", "TARGETS", "Cell", "Target", "evaluate"]

NA = "not available"

Cell = dict[str, Any]


def _ratio(a: Any, b: Any) -> float | str:
    """``a / b`` of two section records, or why it cannot be computed."""
    for rec in (a, b):
        if rec is None:
            return "not measured in this run"
        if isinstance(rec, dict) and not rec.get("available", True):
            return rec["reason"]
    return float(a) / float(b)


def _med(section: Cell, name: str) -> Any:
    rec = section.get(name)
    return rec["median"] if rec and rec.get("available") else rec


def _fps(section: Cell, name: str) -> Any:
    rec = section.get(name)
    return rec["fps"] if rec and rec.get("available") else rec


RECURRENT_OPS = ("LSTM", "GRU", "RNN", "DynamicQuantizeLSTM")


def _recurrent_share(c: Cell) -> float | str:
    """The recurrent ops' share of kernel time per frame (onnxruntime's profiler)."""
    shares = c.get("profile", {}).get("op_share")
    if not shares:
        return "not measured in this run"
    return sum(v for k, v in shares.items() if k in RECURRENT_OPS)


def _size(modes: Cell, name: str) -> Any:
    rec = modes.get(name)
    return rec["size_bytes"] if rec and rec.get("available") else rec


def _footprint(c: Cell, key: str) -> Any:
    rec = c["footprint"]["runtime"]
    return rec[key] if rec.get(key) is not None else "peak RSS not measurable on this OS"


@dataclass(frozen=True)
class Target:
    """One target of issue 6: a measured figure, a limit and the direction it must hold."""

    key: str
    text: str
    limit: float
    kind: Literal["max", "min"]  # the figure must stay <= limit (max) or >= limit (min)
    unit: str
    measure: Callable[[Cell], float | str]  # the figure, or why it is not available

    @property
    def goal(self) -> str:
        return f"{'≤' if self.kind == 'max' else '≥'} {self.limit:g}{self.unit}"

    def check(self, cell: Cell) -> dict[str, Any]:
        value = self.measure(cell)
        if isinstance(value, str):
            return {"value": None, "status": NA, "reason": value}
        met = value <= self.limit if self.kind == "max" else value >= self.limit
        return {"value": value, "status": "met" if met else "missed"}


TARGETS: tuple[Target, ...] = (
    Target(
        "predictor_vs_session_run",
        "StreamingPredictor per frame / hand-written session.run loop",
        0.8,
        "max",
        "×",
        lambda c: _ratio(_med(c["latency"], "predictor"), _med(c["latency"], "session_run")),
    ),
    Target(
        "predictor_vs_identity",
        "StreamingPredictor per frame / Identity-model floor",
        4.0,
        "max",
        "×",
        lambda c: _ratio(_med(c["latency"], "predictor"), _med(c["latency"], "identity")),
    ),
    Target(
        "torch_eager_speedup",
        "PyTorch eager per frame / StreamingPredictor per frame",
        5.0,
        "min",
        "×",
        lambda c: _ratio(_med(c["latency"], "torch_eager"), _med(c["latency"], "predictor")),
    ),
    Target(
        "pool_vs_loop",
        "StreamPool.step ({id: frame} dict) frames/s / looping predictors, many streams",
        10.0,
        "min",
        "×",
        lambda c: _ratio(_fps(c["streams"], "pool"), _fps(c["streams"], "loop_predictors")),
    ),
    Target(
        "pool_vs_ort_batched",
        "StreamPool.step_rows (ids + [N, F] array) per round / one hand-written batched "
        "session.run, many streams",
        1.1,
        "max",
        "×",
        lambda c: _ratio(_med(c["streams"], "pool_rows"), _med(c["streams"], "ort_batched")),
    ),
    Target(
        "pool_vs_ort_batched_wide",
        "StreamPool.step_rows / hand-written batched session.run, at the wide stream count "
        "(4,096 by default)",
        1.1,
        "max",
        "×",
        lambda c: _ratio(
            _med(c.get("streams_wide", {}), "pool_rows"),
            _med(c.get("streams_wide", {}), "ort_batched"),
        ),
    ),
    Target(
        "pool_partial_vs_gathered",
        "StreamPool.step_rows of k of N streams (k ≥ 16, worst k) / hand-written gather, one "
        "session.run over the k rows, scatter",
        1.3,
        "max",
        "×",
        worst_partial_ratio,
    ),
    Target(
        "recurrent_kernel_share",
        "recurrent ops' share of kernel time, one frame (onnxruntime profiler)",
        0.8,
        "min",
        "",
        _recurrent_share,
    ),
    Target(
        "chunk32_vs_chunk1",
        "frames/s at chunk 32 / chunk 1",
        5.0,
        "min",
        "×",
        lambda c: _ratio(_fps(c["chunks"], "32"), _fps(c["chunks"], "1")),
    ),
    Target(
        "unrolled_per_frame",
        "unrolled per frame (one-step graph) / native per frame",
        1.5,
        "max",
        "×",
        lambda c: _ratio(_med(c["modes"], "unrolled"), _med(c["modes"], "native")),
    ),
    Target(
        "int8_size",
        "int8 file size / fp32 (native) file size",
        0.3,
        "max",
        "×",
        lambda c: _ratio(_size(c["modes"], "int8"), _size(c["modes"], "native")),
    ),
    Target(
        "int8_latency",
        "int8 per-frame latency / fp32 (native)",
        1.0,
        "max",
        "×",
        lambda c: _ratio(_med(c["modes"], "int8"), _med(c["modes"], "native")),
    ),
    Target(
        "runtime_wall",
        "runtime process: import, load, stream 1,000 frames (wall)",
        0.6,
        "max",
        " s",
        lambda c: _footprint(c, "wall_s"),
    ),
    Target(
        "runtime_rss",
        "runtime process: peak RSS (MB = 10^6 bytes)",
        70.0,
        "max",
        " MB",
        lambda c: _footprint(c, "rss_mb"),
    ),
)


def evaluate(cells: dict[str, Cell]) -> list[dict[str, Any]]:
    """Every target checked against every cell's results."""
    return [
        {
            "key": t.key,
            "text": t.text,
            "goal": t.goal,
            "results": {name: t.check(cell) for name, cell in cells.items()},
        }
        for t in TARGETS
    ]
