"""What a quantized model trades: file size, per-frame latency and accuracy vs fp32."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeseq.errors import ExportError
from edgeseq.table import format_table

__all__ = ["QuantReport", "QuantRow", "measure"]


@dataclass(frozen=True)
class QuantRow:
    """One model in the comparison."""

    model: str
    kind: str  # fp32, int8, fp16
    size_bytes: int
    us_per_frame: float  # StreamingPredictor.step on one frame, median, 1 thread
    max_abs: float  # first output vs the fp32 model on the held-out frames
    mse: float
    task_metric: float | None = None  # vs targets: MSE, or accuracy for classifiers


@dataclass
class QuantReport:
    """fp32 vs quantized; ``rows[0]`` is the fp32 model."""

    rows: list[QuantRow]
    data: str  # where the held-out frames came from
    metric: str | None = None  # name of the task metric, if targets were given
    notes: list[str] = field(default_factory=list)

    @property
    def quantized(self) -> QuantRow:
        return self.rows[-1]

    def table(self) -> str:
        head = ["model", "kind", "size KiB", "µs/frame", "max abs vs fp32", "MSE vs fp32"]
        if self.metric:
            head.append(self.metric)
        rows = []
        for r in self.rows:
            row = [r.model, r.kind, r.size_bytes / 1024, r.us_per_frame, r.max_abs, r.mse]
            if self.metric:
                row.append(r.task_metric if r.task_metric is not None else "-")
            rows.append(row)
        q, f = self.rows[-1], self.rows[0]
        lines = [
            format_table(head, rows),
            f"size x{q.size_bytes / f.size_bytes:.2f}, latency x"
            f"{q.us_per_frame / max(f.us_per_frame, 1e-9):.2f} vs fp32; held-out: {self.data}",
        ]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def _held_out(contract, held_out: np.ndarray | None) -> tuple[np.ndarray, str]:
    spec = contract.frames
    trailing = [int(d) for d in spec.shape[2:]]
    if held_out is None:
        rng = np.random.default_rng(0)
        if np.dtype(spec.dtype).kind in "iu":
            vocab = len(contract.preprocessing.vocab or []) or 2
            return rng.integers(0, vocab, (4, 64, *trailing)), "synthetic token ids, 4 x 64"
        mean = np.asarray(contract.preprocessing.mean or 0.0, np.float32)
        std = np.asarray(contract.preprocessing.std or 1.0, np.float32)
        x = rng.standard_normal((4, 64, *trailing)).astype(np.float32) * std + mean
        return x, "synthetic N(0,1) frames in model units, 4 sequences x 64 frames"
    arr = np.asarray(held_out)
    if arr.ndim == len(trailing) + 1:
        arr = arr[None]
    if arr.ndim != len(trailing) + 2 or list(arr.shape[2:]) != trailing:
        raise ExportError(
            f"held-out data must be [T, {', '.join(map(str, trailing))}] or [N, T, ...] "
            f"frames, got shape {arr.shape}."
        )
    return arr, f"{arr.shape[0]} sequence(s) x {arr.shape[1]} frames given"


def _outputs(path: Path, seqs: np.ndarray) -> np.ndarray:
    from edgeseq.runtime import StreamingPredictor

    pred = StreamingPredictor(path, threads=1)
    outs = []
    for seq in seqs:
        pred.reset()
        y = pred.step(seq)
        outs.append(y if not isinstance(y, dict) else next(iter(y.values())))
    return np.stack(outs).astype(np.float64)


def _latency(path: Path, seqs: np.ndarray, frames: int) -> float:
    from edgeseq.runtime import StreamingPredictor

    pred = StreamingPredictor(path, threads=1)
    flat = seqs.reshape(-1, *seqs.shape[2:])
    frames = max(1, min(frames, len(flat)))
    for f in flat[:10]:  # warm-up
        pred.step(f)
    times = []
    for f in flat[:frames]:
        t0 = time.perf_counter()
        pred.step(f)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e6)


def _task(y: np.ndarray, targets: np.ndarray, classify: bool) -> float:
    if classify:
        pred = y.argmax(-1)
        if pred.shape != targets.shape:
            raise ExportError(f"targets shape {targets.shape} != predictions {pred.shape}")
        return float(np.mean(pred == targets))
    if y.shape != targets.shape:
        raise ExportError(f"targets shape {targets.shape} != outputs {y.shape}")
    return float(np.mean((y - targets) ** 2))


def measure(
    fp32: Path,
    quant: Path,
    kind: str,
    held_out: np.ndarray | None,
    targets: np.ndarray | None,
    latency_frames: int,
) -> QuantReport:
    """Compare the fp32 model with its quantized copy on held-out frames."""
    from edgeseq.runtime import StreamingPredictor

    contract = StreamingPredictor(fp32).contract
    seqs, data = _held_out(contract, held_out)
    ref = _outputs(fp32, seqs)
    got = _outputs(quant, seqs)
    classify = contract.model.task == "classify"
    tgt = None if targets is None else np.asarray(targets)
    if tgt is not None and tgt.ndim == ref.ndim - (1 if classify else 0) - 1:
        tgt = tgt[None]  # one sequence given without its N axis
    rows = []
    for path, name, y in ((fp32, "fp32", ref), (quant, kind, got)):
        err = np.abs(y - ref)
        rows.append(
            QuantRow(
                model=path.name,
                kind=name,
                size_bytes=path.stat().st_size,
                us_per_frame=_latency(path, seqs, latency_frames),
                max_abs=float(err.max()),
                mse=float(np.mean(err**2)),
                task_metric=None if tgt is None else _task(y, tgt, classify),
            )
        )
    metric = None if tgt is None else ("accuracy" if classify else "MSE vs targets")
    return QuantReport(rows=rows, data=data, metric=metric)
