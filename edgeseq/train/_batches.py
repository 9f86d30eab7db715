"""Training data for :mod:`edgeseq.train.training`: shape checks, splits and batches.

Every topology becomes the same thing here, a :data:`Batch`: inputs, per-frame targets,
a mask of the frames that count, and the state the sequence starts from. The training
loop in :mod:`edgeseq.train.training` never looks at the topology.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence

from edgeseq.errors import InputError
from edgeseq.train.models import Seq2Seq, SeqConfig, SeqModel, State

__all__ = ["Batch", "SequenceData"]

# (inputs (B, T[, F]), per-frame targets (B, T[, out]), mask (B, T) bool, initial state)
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, State | None]
Pairs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # src, src_len, tgt, tgt_len

_CROSS_ENTROPY_TASKS = ("classify", "generate", "caption", "translate")
_MSE_TASKS = ("regress", "forecast")


@dataclass
class SequenceData:
    """Inputs and targets for :func:`~edgeseq.train.training.fit`; numpy arrays or tensors.

    Attributes
    ----------
    inputs : (N, T, F) float frames, or (N, T) int64 token ids (model with ``vocab_size``).
        (N, T) float is accepted when F == 1.
    targets : per frame (N, T, out) float or (N, T) int64 class ids; per sequence (N, out)
        float or (N,) int64 for many_to_one. The ``out`` axis may be dropped when out == 1.
    lengths : (N,) int, optional
        Valid frames per row; frames from ``lengths[i]`` on are padding. Default: all T.
    conditions : (N, C) float, one_to_many only
        The vectors that set each sequence's initial state (``init_state(condition=...)``).
    """

    inputs: Any
    targets: Any
    lengths: Any = None
    conditions: Any = None

    def __len__(self) -> int:
        return len(self.inputs)


def loss_kind(cfg: SeqConfig, loss: str) -> str:
    """``"mse"`` or ``"cross_entropy"``; ``"auto"`` decides by ``cfg.task``."""
    if loss in ("mse", "cross_entropy"):
        return loss
    if loss != "auto":
        raise InputError(f"loss must be 'auto', 'mse' or 'cross_entropy', got {loss!r}")
    if cfg.task in _CROSS_ENTROPY_TASKS:
        return "cross_entropy"
    if cfg.task in _MSE_TASKS:
        return "mse"
    raise InputError(
        f"no default loss for task {cfg.task!r} (known: {_CROSS_ENTROPY_TASKS + _MSE_TASKS}); "
        "pass loss='mse' or loss='cross_entropy'"
    )


def checked(cfg: SeqConfig, data: SequenceData, kind: str) -> SequenceData:
    """``data`` as tensors of the shapes and dtypes ``cfg`` needs, or an InputError saying why."""
    x = torch.as_tensor(data.inputs)
    if cfg.vocab_size:
        if x.ndim != 2 or x.is_floating_point():
            raise InputError(
                f"inputs: expected (N, T) integer token ids (vocab_size={cfg.vocab_size}), "
                f"got shape {tuple(x.shape)} {x.dtype}"
            )
        x = x.long()
    else:
        x = x[..., None] if x.ndim == 2 and cfg.input_size == 1 else x
        if x.ndim != 3 or x.shape[-1] != cfg.input_size:
            raise InputError(
                f"inputs: expected (N, T, {cfg.input_size}) float frames, got {tuple(x.shape)}"
            )
        x = x.float()
    n, t = x.shape[:2]
    per_sequence = cfg.topology == "many_to_one"
    want = (n,) if per_sequence else (n, t)
    y = torch.as_tensor(data.targets)
    if kind == "cross_entropy":
        ok = tuple(y.shape) == want and not y.is_floating_point()
        expected = f"{want} integer class ids"
        if ok and len(y) and not 0 <= int(y.min()) <= int(y.max()) < cfg.output_size:
            raise InputError(
                f"targets: class ids must be in [0, {cfg.output_size}), got "
                f"[{int(y.min())}, {int(y.max())}]"
            )
        y = y.long()
    else:
        y = y[..., None] if tuple(y.shape) == want and cfg.output_size == 1 else y
        expected = f"{(*want, cfg.output_size)} float"
        ok = tuple(y.shape) == (*want, cfg.output_size)
        y = y.float()
    if not ok:
        where = "one per sequence (many_to_one)" if per_sequence else "one per frame"
        raise InputError(f"targets: expected {expected}, {where}, got {tuple(y.shape)} {y.dtype}")
    lengths = torch.full((n,), t) if data.lengths is None else torch.as_tensor(data.lengths).long()
    if tuple(lengths.shape) != (n,) or (
        n and not 1 <= int(lengths.min()) <= int(lengths.max()) <= t
    ):
        raise InputError(
            f"lengths: expected ({n},) ints in [1, {t}], got shape {tuple(lengths.shape)}, "
            f"first values {lengths.flatten().tolist()[:8]}"
        )
    conditions = None
    if cfg.topology == "one_to_many":
        if data.conditions is None:
            raise InputError(
                "one_to_many needs conditions (N, condition_size) to start each sequence"
            )
        conditions = torch.as_tensor(data.conditions).float()
        if tuple(conditions.shape) != (n, cfg.condition_size):
            raise InputError(
                f"conditions: expected {(n, cfg.condition_size)}, got {tuple(conditions.shape)}"
            )
    return SequenceData(x, y, lengths, conditions)


def split(n: int, fraction: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded (train rows, val rows); no validation when ``fraction * n`` rounds to 0."""
    order = torch.randperm(n, generator=gen)
    n_val = round(n * fraction)
    if n_val >= n:
        raise InputError(f"val_fraction {fraction} of {n} items leaves nothing to train on")
    return order[n_val:], order[:n_val]


def sequence_batcher(model: SeqModel) -> Callable[[SequenceData, torch.Tensor], Batch]:
    """Rows of checked data -> a :data:`Batch` on the model's device."""
    cfg, device = model.config, next(model.parameters()).device

    def batch(data: SequenceData, rows: torch.Tensor) -> Batch:
        lengths = data.lengths[rows]  # (B,)
        t = int(lengths.max())  # trim columns that are padding in every row
        steps = torch.arange(t)
        if cfg.topology == "many_to_one":
            mask = steps[None] == lengths[:, None] - 1  # (B, T): the last valid frame only
            per_sequence = data.targets[rows]  # (B[, out])
            target = per_sequence[:, None].expand(-1, t, *per_sequence.shape[1:])  # (B, T[, out])
        else:
            mask = steps[None] < lengths[:, None]  # (B, T): padding excluded
            target = data.targets[rows, :t]
        state = None
        if data.conditions is not None:
            state = model.init_state(condition=data.conditions[rows].to(device))
        x = data.inputs[rows, :t].to(device)
        return x, target.to(device), mask.to(device), state

    return batch


def stream_batchers(
    model: SeqModel, data: SequenceData, cut: int
) -> tuple[Callable[[torch.Tensor], Batch], Callable[[torch.Tensor], Batch]]:
    """Batch makers for streams: train on frames [0, cut), score frames [cut, L) only."""
    device = next(model.parameters()).device
    streams, length = data.inputs.shape[:2]
    tail = (torch.arange(length) >= cut).expand(streams, -1)  # (S, L)

    def train_batch(rows: torch.Tensor) -> Batch:
        x, y = data.inputs[rows, :cut].to(device), data.targets[rows, :cut].to(device)
        return x, y, torch.ones(x.shape[:2], dtype=torch.bool, device=device), None

    def val_batch(rows: torch.Tensor) -> Batch:
        # the whole stream, so the scored tail starts from the state training frames lead to
        x, y = data.inputs[rows].to(device), data.targets[rows].to(device)
        return x, y, tail[rows].to(device), None

    return train_batch, val_batch


def pad_pairs(model: Seq2Seq, sources: Sequence[Any], targets: Sequence[Any], pad_id: int) -> Pairs:
    """Variable-length pairs -> padded (src (N, S[, F]), src_len (N,), tgt (N, T), tgt_len (N,))."""
    if len(sources) != len(targets) or not len(sources):
        raise InputError(
            f"expected equally many sources and targets (>0), got {len(sources)} and {len(targets)}"
        )
    enc = model.encoder.config
    src = [torch.as_tensor(s) for s in sources]
    src = [s.long() if enc.vocab_size else s.float().reshape(len(s), -1) for s in src]
    tgt = [torch.as_tensor(t).long() for t in targets]
    for i, (s, t) in enumerate(zip(src, tgt, strict=True)):
        if len(s) < 1 or t.ndim != 1 or len(t) < 2:
            raise InputError(
                f"pair {i}: expected a non-empty source and a 1-D target of BOS, "
                f"..., EOS (>= 2 tokens), got {tuple(s.shape)} and {tuple(t.shape)}"
            )
        if not enc.vocab_size and s.shape[-1] != enc.input_size:
            raise InputError(
                f"pair {i}: expected source frames (S, {enc.input_size}), got {tuple(s.shape)}"
            )
    src_len = torch.tensor([len(s) for s in src])
    tgt_len = torch.tensor([len(t) for t in tgt])
    padding = pad_id if enc.vocab_size else 0.0
    return (
        pad_sequence(src, batch_first=True, padding_value=padding),
        src_len,
        pad_sequence(tgt, batch_first=True, padding_value=pad_id),
        tgt_len,
    )


def pair_batcher(model: Seq2Seq, pad_id: int) -> Callable[[Pairs, torch.Tensor], Batch]:
    """Rows of padded pairs -> a decoder :data:`Batch` whose state is the packed encoding."""
    device = next(model.parameters()).device

    def batch(pairs: Pairs, rows: torch.Tensor) -> Batch:
        src, src_len, tgt, tgt_len = (p[rows] for p in pairs)
        src = src[:, : int(src_len.max())].to(device)  # (B, S[, F])
        tgt = tgt[:, : int(tgt_len.max())].to(device)  # (B, T)
        x, target = tgt[:, :-1], tgt[:, 1:]  # teacher forcing: read t[:-1], predict t[1:]
        valid = torch.arange(x.shape[1], device=device)[None] < (tgt_len[:, None] - 1).to(device)
        mask = valid & (target != pad_id)  # (B, T-1)
        return x, target, mask, model.encode(src, src_len)  # packed: as if each row were alone

    return batch


def encode_packed(encoder: SeqModel, src: torch.Tensor, lengths: torch.Tensor) -> State:
    """Final state of each padded source as if it were encoded alone: padding never enters.

    ``src`` (B, S) tokens or (B, S, F) frames, ``lengths`` (B,); state tensors (layers, B, hidden).
    """
    return encoder.final_state(src, lengths)


def loss_sum(y: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str) -> torch.Tensor:
    """Loss summed over the frames that count; ``y`` (B, W, out), ``mask`` (B, W)."""
    y, target = y[mask], target[mask]  # (K, out), (K,) or (K, out)
    if kind == "cross_entropy":
        return F.cross_entropy(y, target, reduction="sum")
    return (y - target).pow(2).mean(-1).sum()  # mean over outputs, as F.mse_loss per frame
