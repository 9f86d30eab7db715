"""Connectionist temporal classification: train a many-to-many model to transcribe.

CTC (Graves et al., 2006) needs no alignment between input frames and output
characters: the model emits a character or *blank* at every frame, and the loss sums
over every alignment that collapses (merge repeats, drop blanks) to the transcript.
Greedy decoding takes the best symbol per frame and collapses as frames arrive, so text
appears while audio is still coming in (:class:`edgeseq.runtime.ctc.GreedyCTC`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence

from edgeseq.errors import InputError
from edgeseq.train.models import SeqModel
from edgeseq.train.training import TrainConfig, TrainResult, _run

__all__ = ["ctc_loss", "fit_ctc"]

Losses = Iterator[tuple[torch.Tensor, int, float]]


def ctc_loss(
    model: SeqModel,
    inputs: torch.Tensor,
    lengths: torch.Tensor,
    targets: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int = 0,
) -> torch.Tensor:
    """Summed CTC loss of padded ``inputs`` ``(B, T, F)`` (``lengths`` valid frames) against
    padded ``targets`` ``(B, L)`` (``target_lengths`` valid symbols)."""
    y, _ = model(inputs)  # (B, T, vocab); padding after lengths never reaches earlier frames
    logp = torch.log_softmax(y, dim=-1).transpose(0, 1)  # (T, B, vocab)
    return F.ctc_loss(
        logp, targets, lengths, target_lengths, blank=blank, reduction="sum", zero_infinity=True
    )


def _checked(
    model: SeqModel, inputs: Sequence[Any], targets: Sequence[Any], blank: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    if len(inputs) != len(targets) or not len(inputs):
        raise InputError(
            f"expected equally many inputs and targets (> 0), got {len(inputs)} and {len(targets)}"
        )
    cfg = model.config
    xs = [torch.as_tensor(x, dtype=torch.float32) for x in inputs]
    ys = [torch.as_tensor(y, dtype=torch.long) for y in targets]
    for i, (x, y) in enumerate(zip(xs, ys)):
        if x.ndim != 2 or x.shape[1] != cfg.input_size or y.ndim != 1 or not len(y):
            raise InputError(
                f"item {i}: expected frames (T, {cfg.input_size}) and a non-empty 1-D "
                f"transcript of symbol ids, got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        if int(y.min()) < 0 or int(y.max()) >= cfg.output_size or bool((y == blank).any()):
            raise InputError(
                f"item {i}: symbol ids must be in [0, {cfg.output_size}) and never the blank "
                f"({blank}); got [{int(y.min())}, {int(y.max())}]"
            )
        if len(x) < len(y):
            raise InputError(
                f"item {i}: {len(x)} frames cannot emit {len(y)} symbols; CTC needs at least "
                "one frame per symbol (more with repeats)"
            )
    return xs, ys


def fit_ctc(
    model: SeqModel,
    inputs: Sequence[Any],
    targets: Sequence[Any],
    config: TrainConfig | None = None,
    *,
    val: tuple[Sequence[Any], Sequence[Any]] | None = None,
    blank: int = 0,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> TrainResult:
    """Train ``model`` (many-to-many, ``output_size`` symbols with ``blank``) with CTC.

    Parameters
    ----------
    inputs : sequence of (T_i, F) float frames, any lengths
    targets : sequence of (L_i,) symbol ids (no blank), L_i <= T_i
    val : (inputs, targets), optional
        Without it ``config.val_fraction`` of the items is held out (seeded).
    augment : callable, optional
        Applied to each padded training batch ``(B, T, F)`` (e.g. masking bands of
        features); never to validation.

    Batches hold items of similar length (sorted within shuffled groups), so little
    time goes to padding. The loss is per target symbol; the result is as :func:`fit`'s.
    """
    config = config or TrainConfig()
    xs, ys = _checked(model, inputs, targets, blank)
    held = None if val is None else _checked(model, *val, blank)
    gen = torch.Generator().manual_seed(config.seed)
    if held is None:
        order = torch.randperm(len(xs), generator=gen)
        n_val = round(len(xs) * config.val_fraction)
        if n_val >= len(xs):
            raise InputError(f"val_fraction {config.val_fraction} leaves nothing to train on")
        val_rows, train_rows = order[:n_val].tolist(), order[n_val:].tolist()
        held = ([xs[i] for i in val_rows], [ys[i] for i in val_rows])
        xs, ys = [xs[i] for i in train_rows], [ys[i] for i in train_rows]

    def losses(data: tuple[list[torch.Tensor], list[torch.Tensor]], train: bool) -> Losses:
        items, labels = data
        order = (
            torch.randperm(len(items), generator=gen).tolist() if train else list(range(len(items)))
        )
        group = config.batch_size * 20
        batches = []
        for g in range(0, len(order), group):  # similar lengths together, groups shuffled
            chunk = sorted(order[g : g + group], key=lambda i: len(items[i]))
            batches += [
                chunk[b : b + config.batch_size] for b in range(0, len(chunk), config.batch_size)
            ]
        if train:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]
        for k, rows in enumerate(batches):
            x = pad_sequence([items[i] for i in rows], batch_first=True)  # (B, T, F)
            if train and augment is not None:
                x = augment(x)
            lengths = torch.tensor([len(items[i]) for i in rows])
            target = pad_sequence([labels[i] for i in rows], batch_first=True)  # (B, L)
            t_len = torch.tensor([len(labels[i]) for i in rows])
            loss = ctc_loss(model, x, lengths, target, t_len, blank)
            yield loss, int(t_len.sum()), (k + 1) / len(batches)

    validate = (lambda: losses(held, False)) if held is not None and len(held[0]) else None
    return _run(model, config, lambda: losses((xs, ys), True), validate)
