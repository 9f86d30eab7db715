"""One configurable recurrent sequence model for the lecture's cells and topologies.

State is explicit: ``forward(x, state)`` returns ``(y, state)`` and the module keeps
nothing between calls. A state is a tuple of tensors, each ``(layers, batch, hidden)``:
``(h,)`` for the simple RNN and the GRU, ``(h, c)`` for the LSTM.

Topologies (the four shapes of the lecture, plus encoder-decoder):

- ``many_to_many``: an output per frame, ``y`` is ``(batch, time, out)``.
- ``many_to_one``: a label or value per sequence. ``forward`` still returns an output per
  frame, the running prediction; training uses the last valid frame.
- ``one_to_one``: each frame on its own, from the initial state; no state is carried.
- ``one_to_many``: a conditioning vector (e.g. an image's features) sets the initial state
  through ``init_state(condition=...)``; the model then generates token by token.
- ``seq2seq``: :class:`Seq2Seq`, an encoder whose final state starts a decoder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import nn

__all__ = ["CELLS", "TOPOLOGIES", "Seq2Seq", "SeqConfig", "SeqModel", "State"]

CELLS = ("rnn", "lstm", "gru")
TOPOLOGIES = ("one_to_one", "one_to_many", "many_to_one", "many_to_many", "seq2seq")
State = tuple[torch.Tensor, ...]


@dataclass
class SeqConfig:
    """Everything that defines a :class:`SeqModel`; stored as JSON in checkpoints."""

    cell: Literal["rnn", "lstm", "gru"] = "lstm"
    input_size: int = 1  # features per frame (embedding size when vocab_size is set)
    hidden_size: int = 32
    layers: int = 1
    output_size: int = 1
    topology: str = "many_to_many"
    dropout: float = 0.0  # between stacked layers, as nn.LSTM does
    nonlinearity: Literal["tanh", "relu"] = "tanh"  # simple RNN only
    vocab_size: int | None = None  # token-id inputs through an embedding
    condition_size: int | None = None  # one_to_many: size of the conditioning vector
    task: str = "regress"  # forecast, classify, generate, caption, translate, regress
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {self.cell!r}")
        if self.topology not in TOPOLOGIES:
            raise ValueError(f"topology must be one of {TOPOLOGIES}, got {self.topology!r}")
        if self.topology == "one_to_many" and not self.condition_size:
            raise ValueError(
                "topology 'one_to_many' needs condition_size (the conditioning vector)"
            )
        for name in ("input_size", "hidden_size", "layers", "output_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SeqConfig:
        return cls(**json.loads(text))

    @property
    def state_names(self) -> tuple[str, ...]:
        return ("h", "c") if self.cell == "lstm" else ("h",)


class SeqModel(nn.Module):
    """Embedding or frames -> stacked RNN/LSTM/GRU -> linear head, with explicit state.

    ``x`` is ``(batch, time, input_size)`` float, or ``(batch, time)`` int64 token ids when
    ``config.vocab_size`` is set. Returns ``y`` ``(batch, time, output_size)`` and the new
    state.
    """

    def __init__(self, config: SeqConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.input_size) if c.vocab_size else None
        kwargs: dict[str, Any] = dict(
            input_size=c.input_size,
            hidden_size=c.hidden_size,
            num_layers=c.layers,
            batch_first=True,
            dropout=c.dropout if c.layers > 1 else 0.0,
        )
        if c.cell == "rnn":
            self.rnn: nn.RNNBase = nn.RNN(nonlinearity=c.nonlinearity, **kwargs)
        elif c.cell == "gru":
            self.rnn = nn.GRU(**kwargs)
        else:
            self.rnn = nn.LSTM(**kwargs)
        self.head = nn.Linear(c.hidden_size, c.output_size)
        # one_to_many: the conditioning vector becomes the initial hidden state
        self.bridge = (
            nn.Linear(c.condition_size, c.layers * c.hidden_size) if c.condition_size else None
        )

    def init_state(
        self, batch: int = 1, condition: torch.Tensor | None = None, device: Any = None
    ) -> State:
        """The state a sequence starts from: zeros, or derived from ``condition`` ``(batch, C)``."""
        c = self.config
        if condition is not None:
            if self.bridge is None:
                raise ValueError("this model takes no condition (config.condition_size is None)")
            batch = condition.shape[0]
            h = torch.tanh(self.bridge(condition))  # (batch, layers*hidden)
            h = h.view(batch, c.layers, c.hidden_size).transpose(0, 1).contiguous()
        else:
            h = torch.zeros(c.layers, batch, c.hidden_size, device=device)
        if c.cell == "lstm":
            return (h, torch.zeros_like(h))
        return (h,)

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        if self.embed is not None:
            x = self.embed(x)  # (batch, time) -> (batch, time, input_size)
        batch, time = x.shape[0], x.shape[1]
        if self.config.topology == "one_to_one":
            # every frame is its own one-step sequence from the initial state
            frames = x.reshape(batch * time, 1, x.shape[-1])
            y, _ = self._run(frames, self.init_state(batch * time, device=x.device))
            return self.head(y).reshape(batch, time, -1), ()
        if state is None or len(state) == 0:
            state = self.init_state(batch, device=x.device)
        y, state = self._run(x, state)  # (batch, time, hidden)
        return self.head(y), state

    def final_state(self, x: torch.Tensor, lengths: torch.Tensor) -> State:
        """The state after each row's ``lengths`` valid frames, as if encoded alone.

        ``x`` is ``(batch, time[, features])`` padded after ``lengths`` ``(batch,)``; the
        padding never enters the state (the rows are packed). Returns tensors
        ``(layers, batch, hidden)`` in input order.
        """
        from torch.nn.utils.rnn import pack_padded_sequence

        if self.embed is not None:
            x = self.embed(x)  # (batch, time, input_size)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        start = self.init_state(x.shape[0], device=x.device)
        # nn.RNN/GRU take h, nn.LSTM takes (h, c); both unsort the final state to input order
        _, final = self.rnn(packed, start if len(start) == 2 else start[0])
        return tuple(final) if isinstance(final, tuple) else (final,)

    def _run(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if self.config.cell == "lstm":
            y, (h, c) = self.rnn(x, (state[0], state[1]))
            return y, (h, c)
        y, h = self.rnn(x, state[0])
        return y, (h,)


class Seq2Seq(nn.Module):
    """Encoder-decoder: the encoder's final state starts the decoder (no attention).

    ``encoder`` reads source frames or tokens; ``decoder`` is a token model whose
    ``output_size`` is the target vocabulary. Both must share cell, layers and hidden size.
    """

    def __init__(self, encoder: SeqConfig, decoder: SeqConfig) -> None:
        super().__init__()
        for name in ("cell", "layers", "hidden_size"):
            if getattr(encoder, name) != getattr(decoder, name):
                raise ValueError(f"encoder and decoder must share {name}")
        self.encoder = SeqModel(encoder)
        self.decoder = SeqModel(decoder)

    def encode(self, src: torch.Tensor, lengths: torch.Tensor | None = None) -> State:
        """The decoder's first state from ``src`` ``(batch, S[, F])``; with ``lengths``
        ``(batch,)`` each padded row is encoded as if alone."""
        if lengths is not None:
            return self.encoder.final_state(src, lengths)
        _, state = self.encoder(src)
        return state

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: ``tgt_in`` ``(batch, T)`` -> logits ``(batch, T, vocab)``."""
        y, _ = self.decoder(tgt_in, self.encode(src))
        return y
