"""Tasks behind ``edgeseq train``: turn a data source into a trained model and a checkpoint.

A checkpoint's ``extra`` carries what export needs to write the contract:
``{"preprocessing": {mean, std, out_mean, out_std, vocab}, "task": ..., "data": ...}``;
class names travel in ``SeqConfig.extra["labels"]``.

Data sources:

- ``forecast``: a CSV file of numeric columns (one row per time step; ``columns`` picks
  which), or the built-in ``ibm`` series. Each frame predicts the next row.
- ``classify``: the built-in ``basic-motions`` sensor set (needs ``edgeseq[examples]``),
  or a CSV with a ``sequence`` id column, a ``label`` column and feature columns.
- ``generate``: a text file, or the built-in ``pydoc`` text; character level.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq.errors import InputError

__all__ = ["TASKS", "TaskOptions", "train_task"]

TASKS = ("forecast", "classify", "generate")


@dataclass
class TaskOptions:
    """What ``edgeseq train`` was asked for."""

    task: str
    data: str
    cell: str = "lstm"
    hidden_size: int = 32
    layers: int = 1
    dropout: float = 0.0
    epochs: int = 10
    batch_size: int = 32
    lr: float = 3e-3
    clip_norm: float | None = 1.0
    tbptt: int | None = 64
    seq_len: int = 64  # generate: training window length in characters
    columns: list[str] = field(default_factory=list)
    max_steps: int | None = None
    seed: int = 0
    progress: bool = True


def train_task(opts: TaskOptions, out: str | Path) -> dict[str, Any]:
    """Train as ``opts`` says and write a checkpoint to ``out``; return a short summary."""
    import torch

    from edgeseq.train.checkpoint import save_checkpoint
    from edgeseq.train.models import SeqConfig, SeqModel
    from edgeseq.train.training import SequenceData, TrainConfig, fit, fit_stream

    if opts.task not in TASKS:
        raise InputError(f"task must be one of {TASKS}, got {opts.task!r}")
    torch.manual_seed(opts.seed)
    cfg = TrainConfig(
        epochs=opts.epochs,
        batch_size=opts.batch_size,
        lr=opts.lr,
        clip_norm=opts.clip_norm,
        seed=opts.seed,
        max_steps=opts.max_steps,
        progress=opts.progress,
        patience=3,
    )
    common = dict(
        cell=opts.cell, hidden_size=opts.hidden_size, layers=opts.layers, dropout=opts.dropout
    )
    extra: dict[str, Any] = {"task": opts.task, "data": opts.data}
    if opts.task == "forecast":
        frames = _series(opts.data, opts.columns)  # (L, F)
        seen = frames[: len(frames) - round(len(frames) * cfg.val_fraction)]  # no peeking
        mean, std = seen.mean(0), seen.std(0) + 1e-8
        norm = ((frames - mean) / std).astype(np.float32)
        model = SeqModel(
            SeqConfig(
                input_size=frames.shape[1], output_size=frames.shape[1], task="forecast", **common
            )
        )
        cfg.tbptt, cfg.batch_size = opts.tbptt, 1
        result = fit_stream(model, norm[:-1], norm[1:], cfg)
        extra["preprocessing"] = {
            "mean": mean.tolist(),
            "std": std.tolist(),
            "out_mean": mean.tolist(),
            "out_std": std.tolist(),
        }
    elif opts.task == "classify":
        x, y, labels = _labelled_sequences(opts.data, opts.columns)
        mean = x.reshape(-1, x.shape[-1]).mean(0)
        std = x.reshape(-1, x.shape[-1]).std(0) + 1e-8
        model = SeqModel(
            SeqConfig(
                input_size=x.shape[-1],
                output_size=len(labels),
                topology="many_to_one",
                task="classify",
                extra={"labels": labels},
                **common,
            )
        )
        result = fit(model, SequenceData(((x - mean) / std).astype(np.float32), y), cfg)
        extra["preprocessing"] = {"mean": mean.tolist(), "std": std.tolist()}
    else:
        from edgeseq.train.data import Vocabulary

        text = _text(opts.data)
        vocab = Vocabulary.from_text(text)
        ids = vocab.encode(text)
        n = (len(ids) - 1) // opts.seq_len
        if n < 2:
            raise InputError(
                f"{opts.data}: {len(ids)} characters is too short for windows of "
                f"{opts.seq_len}; use a longer text or a smaller --seq-len."
            )
        x = ids[: n * opts.seq_len].reshape(n, opts.seq_len)
        y = ids[1 : n * opts.seq_len + 1].reshape(n, opts.seq_len)
        model = SeqModel(
            SeqConfig(
                input_size=min(32, len(vocab)),
                vocab_size=len(vocab),
                output_size=len(vocab),
                task="generate",
                **common,
            )
        )
        result = fit(model, SequenceData(x, y), cfg)
        extra["preprocessing"] = {"vocab": vocab.to_list()}
    save_checkpoint(out, model, extra=extra)
    last = result.history[-1] if result.history else None
    return {
        "checkpoint": str(out),
        "epochs": len(result.history),
        "steps": result.steps,
        "train_loss": last.train_loss if last else None,
        "val_loss": result.best_val_loss,
        "seconds": result.seconds,
    }


def _read_csv(path: str) -> tuple[list[str], list[list[str]]]:
    p = Path(path)
    if not p.is_file():
        raise InputError(
            f"data file {path!r} does not exist; pass a CSV/text file or a built-in data set name."
        )
    with p.open(newline="") as fh:
        rows = [r for r in csv.reader(fh) if r and not r[0].startswith("#")]
    if len(rows) < 3:
        raise InputError(f"{path}: expected a header and at least 2 rows, got {len(rows)} rows")
    return rows[0], rows[1:]


def _numeric(header: list[str], rows: list[list[str]], columns: list[str], path: str) -> np.ndarray:
    names = columns or [h for i, h in enumerate(header) if _is_number(rows[0][i])]
    missing = [c for c in names if c not in header]
    if missing or not names:
        raise InputError(f"{path}: columns {missing or names} not found; the header has {header}")
    idx = [header.index(c) for c in names]
    try:
        return np.array([[float(r[i]) for i in idx] for r in rows], dtype=np.float64)
    except (ValueError, IndexError) as exc:
        raise InputError(f"{path}: non-numeric value in columns {names} ({exc})") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _series(data: str, columns: list[str]) -> np.ndarray:
    if data in ("ibm", "demo"):
        from edgeseq.train.data import load_demo_series

        return load_demo_series()[1].astype(np.float64)[:, None]
    header, rows = _read_csv(data)
    return _numeric(header, rows, columns, data)


def _labelled_sequences(data: str, columns: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if data == "basic-motions":
        from edgeseq.train.data import load_basic_motions

        x, y, names, _ = load_basic_motions()
        return x, y, list(names)
    header, rows = _read_csv(data)
    if "sequence" not in header or "label" not in header:
        raise InputError(
            f"{data}: a classify CSV needs 'sequence' and 'label' columns; the header has {header}"
        )
    feats = columns or [h for h in header if h not in ("sequence", "label")]
    x_all = _numeric(header, rows, feats, data)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        groups[r[header.index("sequence")]].append(i)
    lengths = {len(v) for v in groups.values()}
    if len(lengths) != 1:
        raise InputError(
            f"{data}: every sequence must have the same number of rows; got "
            f"lengths {sorted(lengths)}"
        )
    labels = sorted({r[header.index("label")] for r in rows})
    x = np.stack([x_all[idx] for idx in groups.values()]).astype(np.float32)
    y = np.array([labels.index(rows[idx[0]][header.index("label")]) for idx in groups.values()])
    return x, y, labels


def _text(data: str) -> str:
    if data == "pydoc":
        from edgeseq.train.data import load_text

        return load_text("pydoc")
    p = Path(data)
    if not p.is_file():
        raise InputError(f"text file {data!r} does not exist; pass a file or 'pydoc'.")
    return p.read_text(encoding="utf-8", errors="replace")
