"""Training for :class:`~edgeseq.train.models.SeqModel` and :class:`~edgeseq.train.models.Seq2Seq`.

One loop serves every topology. A batch becomes per-frame outputs ``y`` (batch, time, out),
per-frame targets, and a boolean mask of the frames that count: every valid frame for
many_to_many / one_to_one / one_to_many, only the last valid frame (``lengths - 1``) for
many_to_one, every non-PAD target for seq2seq. Padding after ``lengths`` never changes an
earlier output of a unidirectional RNN, so masking is exact; the seq2seq encoder packs its
sources because its *final* state would otherwise have read the padding.

Truncated BPTT cuts the time axis into windows of ``TrainConfig.tbptt`` frames with one
optimizer step per window. The state crosses a window boundary as a value, detached, so
no gradient does. :func:`fit_stream` applies this to a few long streams.

Seeding: :func:`fit` seeds a private copy of torch's global RNG (dropout) and shuffles with
its own ``torch.Generator``; the same seed and model give bit-identical weights, and the
caller's RNG state is left as it was.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import torch
from torch import nn

from edgeseq.errors import InputError
from edgeseq.train import _batches as B
from edgeseq.train._batches import Batch, SequenceData
from edgeseq.train.models import Seq2Seq, SeqModel

__all__ = [
    "EpochLog",
    "SequenceData",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "fit",
    "fit_seq2seq",
    "fit_stream",
]

LossName = Literal["auto", "mse", "cross_entropy"]
Losses = Iterator[tuple[torch.Tensor, int, float]]  # (summed loss, frames counted, epoch done)


@dataclass
class TrainConfig:
    """Options of one training run."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3  # Adam
    clip_norm: float | None = 1.0  # max global gradient norm (exploding gradients); None: off
    val_fraction: float = 0.1  # held out (seeded) unless validation data is passed
    patience: int | None = None  # epochs without a better val loss before stopping
    lr_decay: float | None = None  # after an epoch without a better val loss, lr *= this
    seed: int = 0
    tbptt: int | None = None  # truncated BPTT window in frames; None: whole-sequence BPTT
    max_steps: int | None = None  # stop after this many optimizer steps (tests, smoke runs)
    progress: bool = True  # status line on stderr

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "tbptt", "max_steps"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise InputError(f"TrainConfig.{name} must be >= 1, got {value!r}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise InputError(f"clip_norm must be > 0 or None (no clipping), got {self.clip_norm}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise InputError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.patience is not None and self.patience < 1:
            raise InputError(f"patience must be >= 1 or None, got {self.patience}")
        if self.lr_decay is not None and not 0.0 < self.lr_decay < 1.0:
            raise InputError(f"lr_decay must be in (0, 1) or None (off), got {self.lr_decay}")


@dataclass
class EpochLog:
    epoch: int
    train_loss: float  # mean over the epoch's counted frames, as the weights moved
    val_loss: float | None  # None without validation data
    lr: float = 0.0  # the learning rate of the epoch


@dataclass
class TrainResult:
    history: list[EpochLog] = field(default_factory=list)
    best_epoch: int | None = None  # lowest val loss; the model holds that epoch's weights
    best_val_loss: float | None = None
    stopped_early: bool = False  # patience ran out (not max_steps)
    steps: int = 0  # optimizer steps
    seconds: float = 0.0
    grad_norms: list[float] = field(default_factory=list)  # per step, BEFORE clipping


def fit(
    model: SeqModel,
    data: SequenceData,
    config: TrainConfig | None = None,
    *,
    val: SequenceData | None = None,
    loss: LossName = "auto",
) -> TrainResult:
    """Train ``model`` with Adam on ``data``; per-frame or last-frame loss by topology.

    Parameters
    ----------
    model : SeqModel
    data : SequenceData
    config : TrainConfig, optional
    val : SequenceData, optional
        Validation data; without it ``config.val_fraction`` of ``data`` is held out (seeded).
    loss : {"auto", "mse", "cross_entropy"}
        ``"auto"``: cross-entropy for classify/generate/caption/translate, MSE for
        regress/forecast (``model.config.task``).

    Returns
    -------
    TrainResult
        With validation, the model ends holding the weights of its best epoch.
    """
    config, kind = config or TrainConfig(), B.loss_kind(model.config, loss)
    batch = B.sequence_batcher(model)
    train = B.checked(model.config, data, kind)
    held = None if val is None else B.checked(model.config, val, kind)
    return _fit_rows(
        model, model, kind, config, (partial(batch, train), len(train)),
        None if held is None else (partial(batch, held), len(held)),
    )  # fmt: skip


def fit_stream(
    model: SeqModel,
    inputs: Any,
    targets: Any,
    config: TrainConfig | None = None,
    *,
    loss: LossName = "auto",
) -> TrainResult:
    """Truncated BPTT over long streams: windows of ``config.tbptt`` frames, state carried.

    Parameters
    ----------
    model : SeqModel, topology many_to_many
    inputs : (S, L, F) float frames or (S, L) token ids; one stream may be (L, F) or (L,)
    targets : (S, L, out) float or (S, L) class ids per frame; (L, ...) for one stream
    config : TrainConfig
        ``tbptt`` is the window (None: one window per stream). Validation is the last
        ``val_fraction`` of every stream, scored after running through the training part
        so it starts from the state the stream has reached.
    """
    config = config or TrainConfig()
    cfg, kind = model.config, B.loss_kind(model.config, loss)
    if cfg.topology != "many_to_many":
        raise InputError(
            f"fit_stream needs per-frame outputs and a carried state (topology "
            f"'many_to_many'), got {cfg.topology!r}; use fit() for other topologies"
        )
    x, y = torch.as_tensor(inputs), torch.as_tensor(targets)
    if x.ndim == 1 or (x.ndim == 2 and not cfg.vocab_size):  # one stream: (L,) or (L, F)
        x, y = x[None], y[None]
    data = B.checked(cfg, SequenceData(x, y), kind)
    streams, length = data.inputs.shape[:2]
    cut = length - round(length * config.val_fraction)  # train on [0, cut), validate [cut, L)
    if cut < 1:
        raise InputError(f"val_fraction {config.val_fraction} leaves no training frames")
    train_batch, val_batch = B.stream_batchers(model, data, cut)
    # streams are grouped in any order; the windows within a stream stay in order
    held = (val_batch, streams if cut < length else 0)
    return _fit_rows(model, model, kind, config, (train_batch, streams), held)


def fit_seq2seq(
    model: Seq2Seq,
    sources: Sequence[Any],
    targets: Sequence[Any],
    config: TrainConfig | None = None,
    *,
    val: tuple[Sequence[Any], Sequence[Any]] | None = None,
    pad_id: int = 0,
) -> TrainResult:
    """Teacher-forced encoder-decoder training with cross-entropy on the target tokens.

    Parameters
    ----------
    model : Seq2Seq
    sources : sequence of (S_i,) int token ids or (S_i, F) float frames, any lengths
        Each is encoded as if alone (packed), so padding never reaches the final state.
    targets : sequence of (T_i,) int token ids, BOS first and EOS last (T_i >= 2)
        The decoder reads ``t[:-1]`` and predicts ``t[1:]``; ``pad_id`` targets are ignored.
    val : (sources, targets), optional
        Without it ``config.val_fraction`` of the pairs is held out (seeded).
    """
    config, batch = config or TrainConfig(), B.pair_batcher(model, pad_id)
    train = B.pad_pairs(model, sources, targets, pad_id)
    held = None if val is None else B.pad_pairs(model, *val, pad_id)
    return _fit_rows(
        model, model.decoder, "cross_entropy", config, (partial(batch, train), len(sources)),
        None if held is None else (partial(batch, held), len(held[0])),
    )  # fmt: skip


def evaluate(
    model: SeqModel | Seq2Seq,
    data: SequenceData | tuple[Sequence[Any], Sequence[Any]],
    *,
    loss: LossName = "auto",
    batch_size: int = 256,
    pad_id: int = 0,
) -> float:
    """Mean loss on ``data`` (``(sources, targets)`` for a Seq2Seq), as :func:`fit` scores it."""
    if isinstance(model, Seq2Seq):
        pairs = B.pad_pairs(model, *data, pad_id)  # type: ignore[misc]
        batch = partial(B.pair_batcher(model, pad_id), pairs)
        rows = torch.arange(len(pairs[0]))
        return _mean(model, _losses(model.decoder, "cross_entropy", batch, rows, batch_size, None))
    kind = B.loss_kind(model.config, loss)
    checked = B.checked(model.config, data, kind)  # type: ignore[arg-type]
    batch = partial(B.sequence_batcher(model), checked)
    return _mean(model, _losses(model, kind, batch, torch.arange(len(checked)), batch_size, None))


# --- the loop ---------------------------------------------------------------------------------


def _fit_rows(
    model: nn.Module,
    stepped: SeqModel,
    kind: str,
    config: TrainConfig,
    train: tuple[Callable[[torch.Tensor], Batch], int],
    held: tuple[Callable[[torch.Tensor], Batch], int] | None,
) -> TrainResult:
    """Train on (batch maker, row count); ``stepped`` is the SeqModel run in windows.

    ``held`` None: hold out ``config.val_fraction`` of the training rows (seeded).
    """
    gen = torch.Generator().manual_seed(config.seed)  # the split, then every epoch's shuffle
    (make_train, n), (make_val, n_val) = train, held or train
    if held is None:
        train_rows, val_rows = B.split(n, config.val_fraction, gen)
    else:
        train_rows, val_rows = torch.arange(n), torch.arange(n_val)

    def epoch() -> Losses:
        order = train_rows[torch.randperm(len(train_rows), generator=gen)]
        return _losses(stepped, kind, make_train, order, config.batch_size, config.tbptt)

    def validate() -> Losses:
        return _losses(stepped, kind, make_val, val_rows, config.batch_size, None)

    return _run(model, config, epoch, validate if len(val_rows) else None)


def _run(
    model: nn.Module,
    config: TrainConfig,
    epoch_losses: Callable[[], Losses],
    val_losses: Callable[[], Losses] | None,
) -> TrainResult:
    for name in ("patience", "lr_decay"):
        if getattr(config, name) is not None and val_losses is None:
            raise InputError(f"{name} needs validation data: set val_fraction > 0 or pass val=")
    result, start, was_training = TrainResult(), time.perf_counter(), model.training
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr)
    bar = _Bar(config.progress, config.epochs)
    best_state: dict[str, torch.Tensor] | None = None
    stale = 0  # epochs since the best val loss
    with torch.random.fork_rng(devices=[]):  # seeded dropout without touching the caller's RNG
        torch.manual_seed(config.seed)
        for epoch in range(config.epochs):
            model.train()
            total, count = 0.0, 0
            for loss_sum, frames, done in epoch_losses():
                optimizer.zero_grad(set_to_none=True)
                (loss_sum / frames).backward()
                # returns the norm before clipping; an infinite limit only measures it
                norm = nn.utils.clip_grad_norm_(params, config.clip_norm or math.inf)
                optimizer.step()
                result.steps += 1
                result.grad_norms.append(float(norm))
                total, count = total + loss_sum.item(), count + frames
                bar.show(epoch, done, total / count, None)
                if config.max_steps is not None and result.steps >= config.max_steps:
                    break
            val_loss = _mean(model, val_losses()) if val_losses is not None else None
            lr = optimizer.param_groups[0]["lr"]
            result.history.append(EpochLog(epoch, total / max(count, 1), val_loss, lr))
            bar.show(epoch, 1.0, total / max(count, 1), val_loss, final=True)
            if val_loss is not None and (
                result.best_val_loss is None or val_loss < result.best_val_loss
            ):
                result.best_epoch, result.best_val_loss, stale = epoch, val_loss, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            elif val_loss is not None:
                stale += 1
                for group in optimizer.param_groups:  # smaller steps on a plateau
                    group["lr"] *= config.lr_decay or 1.0
                if config.patience is not None and stale >= config.patience:
                    result.stopped_early = True
                    break
            if config.max_steps is not None and result.steps >= config.max_steps:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.train(was_training)
    result.seconds = time.perf_counter() - start
    return result


def _losses(
    model: SeqModel,
    kind: str,
    make_batch: Callable[[torch.Tensor], Batch],
    rows: torch.Tensor,
    batch_size: int,
    window: int | None,
) -> Losses:
    """Summed loss per (batch, window); the consumer steps the optimizer between yields."""
    chunks = rows.split(batch_size)
    for i, chunk in enumerate(chunks):
        x, target, mask, state = make_batch(chunk)  # (B, T, ...), (B, T, ...), (B, T)
        width = window or x.shape[1]
        for start in range(0, x.shape[1], width):
            part = slice(start, start + width)
            y, state = model(x[:, part], state)  # (B, W, out)
            frames = int(mask[:, part].sum())
            if frames:
                yield (
                    B.loss_sum(y, target[:, part], mask[:, part], kind),
                    frames,
                    (i + 1) / len(chunks),
                )
            # the truncation: the next window starts from this value, but no gradient crosses
            state = tuple(s.detach() for s in state)


def _mean(model: nn.Module, losses: Losses) -> float:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        total, count = 0.0, 0
        for loss_sum, frames, _ in losses:
            total, count = total + loss_sum.item(), count + frames
    model.train(was_training)
    return total / max(count, 1)


class _Bar:
    """One status line on stderr: epoch, a bar over the epoch, running loss, last val loss."""

    def __init__(self, enabled: bool, epochs: int) -> None:
        self.enabled, self.epochs, self.last, self.width = enabled, epochs, 0.0, 0
        self.live = enabled and sys.stderr.isatty()  # redraw in place only on a terminal

    def show(
        self, epoch: int, done: float, loss: float, val: float | None, final: bool = False
    ) -> None:
        now = time.monotonic()
        if not self.enabled or not (final or (self.live and now - self.last > 0.1)):
            return
        self.last, fill = now, int(done * 20)
        text = f"epoch {epoch + 1}/{self.epochs} [{'#' * fill}{'.' * (20 - fill)}] loss {loss:.4g}"
        text += f" val {val:.4g}" if val is not None else ""
        self.width = max(self.width, len(text))
        text = text.ljust(self.width)  # overwrite a longer previous line in full
        sys.stderr.write(("\r" if self.live else "") + text + ("\n" if final else ""))
        sys.stderr.flush()
