"""Tasks behind ``edgeseq train``: turn a data source into a trained model and a checkpoint.

A checkpoint's ``extra`` carries what export needs to write the contract:
``{"preprocessing": {mean, std, out_mean, out_std, vocab}, "task": ..., "data": ...}``;
class names travel in ``SeqConfig.extra["labels"]``, and the frame's column names, in
order, in ``SeqConfig.extra["features"]`` (the contract's ``model.extra["features"]``,
which ``edgeseq stream`` uses to pick the same columns from a CSV with a header).

Data sources (``edgeseq train --help`` shows the same, with examples):

- ``forecast``: a CSV file with a header line and numeric columns (one row per time step;
  ``columns`` picks which, default every numeric one), or the built-in ``ibm`` series.
  Each frame predicts the next row.
- ``classify``: the built-in ``basic-motions`` sensor set (needs ``edgeseq[examples]``),
  or a CSV with a ``sequence`` id column, a ``label`` column and feature columns, every
  sequence with the same number of rows.
- ``generate``: a UTF-8 text file, or the built-in ``pydoc`` text; character level.

Messages name ``edgeseq train``'s options: this module is the command's engine.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseq.errors import InputError
from edgeseq.table import is_number

__all__ = ["TASKS", "TaskOptions", "train_task"]

TASKS = ("forecast", "classify", "generate")
_BUILT_IN = {"forecast": ("ibm", "demo"), "classify": ("basic-motions",), "generate": ("pydoc",)}


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
    val_fraction: float = 0.1  # held out for validation and early stopping; 0: none
    log: Callable[[str], None] | None = None  # receives what was read (columns, sizes)


def train_task(opts: TaskOptions, out: str | Path) -> dict[str, Any]:
    """Train as ``opts`` says and write a checkpoint to ``out``; return a short summary.

    Everything that can be wrong with the request (the output folder, the data) is
    checked before torch is imported and anything is trained.
    """
    if opts.task not in TASKS:
        raise InputError(f"task must be one of {TASKS}, got {opts.task!r}")
    _prepare_output(Path(out))
    if opts.columns and (opts.task == "generate" or opts.data in _BUILT_IN[opts.task]):
        raise InputError(
            f"--columns picks CSV columns; --data {opts.data} ({opts.task}) has none to pick. "
            "Drop --columns, or pass a CSV file."
        )
    data = _prepare(opts, opts.log or (lambda _line: None))

    import torch

    from edgeseq.train.checkpoint import save_checkpoint
    from edgeseq.train.models import SeqConfig
    from edgeseq.train.training import SequenceData, TrainConfig, fit, fit_stream

    torch.manual_seed(opts.seed)
    cfg = TrainConfig(
        epochs=opts.epochs,
        batch_size=opts.batch_size,
        lr=opts.lr,
        clip_norm=opts.clip_norm,
        seed=opts.seed,
        max_steps=opts.max_steps,
        progress=opts.progress,
        val_fraction=opts.val_fraction,
        patience=3 if opts.val_fraction > 0 else None,
    )
    model = _build(
        SeqConfig(
            **data.config,
            cell=opts.cell,  # type: ignore[arg-type]
            hidden_size=opts.hidden_size,
            layers=opts.layers,
            dropout=opts.dropout,
        )
    )
    if data.stream:  # one long series: truncated BPTT, state carried across windows
        cfg.tbptt, cfg.batch_size = opts.tbptt, 1
        result = fit_stream(model, data.x, data.y, cfg)
    else:
        result = fit(model, SequenceData(data.x, data.y), cfg)
    save_checkpoint(out, model, extra={"task": opts.task, "data": opts.data, **data.extra})
    last = result.history[-1] if result.history else None
    return {
        "checkpoint": str(out),
        "epochs": len(result.history),
        "steps": result.steps,
        "train_loss": last.train_loss if last else None,
        "val_loss": result.best_val_loss,
        "seconds": result.seconds,
    }


def _build(config: Any) -> Any:
    """The model, once its size is known to fit in this machine's memory for training."""
    import torch

    from edgeseq.train.models import SeqModel

    with torch.device("meta"):  # shapes only: counting costs no memory
        n = sum(p.numel() for p in SeqModel(config).parameters())
    need = 16 * n  # float32 weights, gradients and Adam's two moments
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        total = 0
    what = f"--hidden {config.hidden_size} --layers {config.layers} make {n:,} parameters"
    if total and need > total:
        raise InputError(
            f"{what}; training them needs about {need / 2**30:,.1f} GiB, more than this "
            f"machine's {total / 2**30:,.1f} GiB. Lower --hidden or --layers."
        )
    try:
        return SeqModel(config)
    except (RuntimeError, MemoryError) as exc:  # torch's allocator refused
        raise InputError(f"{what}, which do not fit in memory ({exc}); lower --hidden") from None


@dataclass
class _Prepared:
    """A task's data, ready to train on (numpy only)."""

    config: dict[str, Any]  # SeqConfig fields the data decides
    x: np.ndarray
    y: np.ndarray
    stream: bool  # fit_stream over one series (forecast), else fit over rows
    extra: dict[str, Any]  # for the checkpoint: preprocessing


def _prepare(opts: TaskOptions, log: Callable[[str], None]) -> _Prepared:
    if opts.task == "forecast":
        frames, names = _series(opts.data, opts.columns, log)  # (L, F)
        _check_validation(opts, len(frames) - 1, "time steps")
        seen = frames[: len(frames) - round(len(frames) * opts.val_fraction)]  # no peeking
        mean, std = seen.mean(0), seen.std(0) + 1e-8
        norm = ((frames - mean) / std).astype(np.float32)
        f = frames.shape[1]
        config = dict(input_size=f, output_size=f, task="forecast", extra={"features": names})
        scale = {"mean": mean.tolist(), "std": std.tolist()}
        prep = {**scale, "out_mean": scale["mean"], "out_std": scale["std"]}
        return _Prepared(config, norm[:-1], norm[1:], True, {"preprocessing": prep})
    if opts.task == "classify":
        x, y, labels, names = _labelled_sequences(opts.data, opts.columns, log)
        _check_validation(opts, len(x), "sequences")
        mean = x.reshape(-1, x.shape[-1]).mean(0)
        std = x.reshape(-1, x.shape[-1]).std(0) + 1e-8
        config = dict(
            input_size=x.shape[-1],
            output_size=len(labels),
            topology="many_to_one",
            task="classify",
            extra={"labels": labels, **({"features": names} if names else {})},
        )
        prep = {"mean": mean.tolist(), "std": std.tolist()}
        norm = ((x - mean) / std).astype(np.float32)
        return _Prepared(config, norm, y, False, {"preprocessing": prep})
    from edgeseq.vocab import Vocabulary

    text = _text(opts.data)
    vocab = Vocabulary.from_text(text)
    ids = vocab.encode(text)
    n = (len(ids) - 1) // opts.seq_len
    if n < 2:
        raise InputError(
            f"{opts.data}: {len(ids)} characters is too short for windows of "
            f"{opts.seq_len}; use a longer text or a smaller --seq-len."
        )
    log(f"text: {len(ids):,} characters, {len(vocab)} distinct, {n} windows of {opts.seq_len}")
    _check_validation(opts, n, f"windows of --seq-len {opts.seq_len}")
    x = ids[: n * opts.seq_len].reshape(n, opts.seq_len)
    y = ids[1 : n * opts.seq_len + 1].reshape(n, opts.seq_len)
    config = dict(
        input_size=min(32, len(vocab)), vocab_size=len(vocab), output_size=len(vocab),
        task="generate",
    )  # fmt: skip
    return _Prepared(config, x, y, False, {"preprocessing": {"vocab": vocab.to_list()}})


def _prepare_output(out: Path) -> None:
    """Create ``out``'s folder and check it is writable, so a long run cannot fail at the end."""
    if out.is_dir():
        raise InputError(f"-o {out} is a folder; expected a checkpoint file name such as model.pt")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(
            f"cannot create folder {out.parent} for -o {out} ({exc.strerror or exc}); "
            "pick another path"
        ) from None
    if not os.access(out.parent, os.W_OK):
        raise InputError(f"cannot write -o {out}: folder {out.parent} is not writable")


def _check_validation(opts: TaskOptions, n: int, unit: str) -> None:
    """Refuse a split that holds out nothing, before training, in the command's terms."""
    vf = opts.val_fraction
    if vf > 0 and round(n * vf) < 1:
        need = next(k for k in range(1, 10**6) if round(k * vf) >= 1)
        raise InputError(
            f"{opts.data}: {n} {unit} leave none for validation at --val-fraction {vf:g} "
            f"(needs at least {need}); add data, raise --val-fraction, or pass "
            "--val-fraction 0 to train on all of it without early stopping"
        )


Rows = list[tuple[int, list[str]]]  # (line number, fields) of the data rows


def _read_csv(path: str) -> tuple[list[str], Rows]:
    p = Path(path)
    if not p.is_file():
        raise InputError(
            f"data file {path!r} does not exist; pass a CSV/text file or a built-in data set name."
        )
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            rows = [(reader.line_num, r) for r in reader if r and not r[0].startswith("#")]
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if len(rows) < 3:
        n = max(len(rows) - 1, 0)
        raise InputError(
            f"{path}: expected a header line and at least 2 data rows, got {n} data "
            f"row{'s' if n != 1 else ''}"
        )
    return [h.strip() for h in rows[0][1]], rows[1:]


def _numeric(
    header: list[str], rows: Rows, columns: list[str], path: str, log: Callable[[str], None]
) -> tuple[np.ndarray, list[str]]:
    """The chosen (default: every numeric) columns as ``(rows, F)`` floats, and their names."""
    first = rows[0][1]
    if columns:
        names = columns
        missing = [c for c in names if c not in header]
        if missing:
            raise InputError(f"{path}: --columns {','.join(missing)} not in the header {header}")
    else:
        names = [h for i, h in enumerate(header) if i < len(first) and is_number(first[i])]
        if not names:
            raise InputError(
                f"{path}: no numeric column (header {header}, first data row {first}); "
                "expected a header line of names, then one row of numbers per time step. "
                "Pick columns with --columns NAME,..."
            )
    twice = next((n for n in names if header.count(n) > 1 or names.count(n) > 1), None)
    if twice is not None:  # features are recorded, and picked again when streaming, by name
        where = [str(i + 1) for i, h in enumerate(header) if h == twice]
        said = (
            f"the header has {twice!r} in columns {', '.join(where)}"
            if len(where) > 1
            else f"--columns names {twice!r} twice"
        )
        raise InputError(
            f"{path}: {said}; features are recorded and picked by name, so each must be "
            "one column: rename the header's columns or pick each once"
        )
    idx = [header.index(c) for c in names]
    values = np.empty((len(rows), len(idx)), dtype=np.float64)
    for r, (line, fields) in enumerate(rows):
        if len(fields) != len(header):
            raise InputError(
                f"{path}: line {line} has {len(fields)} field(s); the header has {len(header)}"
            )
        for j, i in enumerate(idx):
            if not is_number(fields[i]):
                raise InputError(
                    f"{path}: line {line}, column {header[i]!r}: expected a number, got "
                    f"{fields[i]!r}; fix the row or leave the column out with --columns"
                )
            values[r, j] = v = float(fields[i])
            if not abs(v) <= _F32_MAX:  # NaN, Inf, or beyond the model's float32
                raise InputError(
                    f"{path}: line {line}, column {header[i]!r}: expected a finite float32 "
                    f"number, got {fields[i]!r}; one such value makes the loss NaN. Impute "
                    "or drop the row first"
                )
    skipped = [h for h in header if h not in names]
    log(
        f"features ({len(names)}, in this order): {', '.join(names)}"
        + (f"; not used: {', '.join(skipped)}" if skipped else "")
    )
    return values, names


_F32_MAX = float(np.finfo(np.float32).max)


def _series(
    data: str, columns: list[str], log: Callable[[str], None]
) -> tuple[np.ndarray, list[str]]:
    if data in _BUILT_IN["forecast"]:
        from edgeseq.train.data import load_demo_series

        log("features (1): Close (IBM daily close, built in)")
        return load_demo_series()[1].astype(np.float64)[:, None], ["Close"]
    header, rows = _read_csv(data)
    values, names = _numeric(header, rows, columns, data, log)
    log(f"series: {len(values):,} time steps")
    return values, names


def _labelled_sequences(
    data: str, columns: list[str], log: Callable[[str], None]
) -> tuple[np.ndarray, np.ndarray, list[str], list[str] | None]:
    if data == "basic-motions":
        from edgeseq.train.data import load_basic_motions

        x, y, names, _ = load_basic_motions()
        log(f"features: {x.shape[-1]} unnamed channels (BasicMotions), {len(x)} sequences")
        return x, y, list(names), None
    header, rows = _read_csv(data)
    if "sequence" not in header or "label" not in header:
        raise InputError(
            f"{data}: a classify CSV needs 'sequence' and 'label' columns; the header has "
            f"{header} (see `edgeseq train --help` for the format)"
        )
    feats = columns or [h for h in header if h not in ("sequence", "label")]
    x_all, names = _numeric(header, rows, feats, data, log)
    seq_col, label_col = header.index("sequence"), header.index("label")
    groups: dict[str, list[int]] = defaultdict(list)
    for i, (_, r) in enumerate(rows):
        groups[r[seq_col]].append(i)
    lengths = {len(v) for v in groups.values()}
    if len(lengths) != 1:
        raise InputError(
            f"{data}: every sequence must have the same number of rows; got "
            f"lengths {sorted(lengths)}"
        )
    labels = sorted({r[label_col] for _, r in rows})
    x = np.stack([x_all[idx] for idx in groups.values()]).astype(np.float32)
    y = np.array([labels.index(rows[idx[0]][1][label_col]) for idx in groups.values()])
    log(f"sequences: {len(x)} of {x.shape[1]} rows; labels: {', '.join(labels)}")
    return x, y, labels, names


def _text(data: str) -> str:
    if data == "pydoc":
        from edgeseq.train.data import load_text

        return load_text("pydoc")
    p = Path(data)
    if not p.is_file():
        raise InputError(f"text file {data!r} does not exist; pass a file or 'pydoc'.")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{data}: not UTF-8 text ({exc.reason} at byte {exc.start}); --task generate "
            "learns a UTF-8 text file character by character"
        ) from None
