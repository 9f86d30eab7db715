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
- ``seq2seq``: :class:`Seq2Seq`, an encoder whose final state starts a decoder; with
  ``attention=`` the decoder also attends over the encoder's outputs (its *memory*), which
  travel with the decoder's state as ``(*rnn state, memory, mask)``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import torch
from torch import nn

__all__ = [
    "ATTENTIONS",
    "CELLS",
    "TOPOLOGIES",
    "Attention",
    "AttentionDecoder",
    "Seq2Seq",
    "SeqConfig",
    "SeqModel",
    "State",
]

CELLS = ("rnn", "lstm", "gru")
ATTENTIONS = ("dot", "general", "additive")  # Luong's dot and general scores; Bahdanau's additive
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
    # while training: on the layer's input (embedded tokens or frames) / its output before the head
    input_dropout: float = 0.0
    output_dropout: float = 0.0
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
        for name in ("dropout", "input_dropout", "output_dropout"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")

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
        x = self._drop(x, self.config.input_dropout)
        batch, time = x.shape[0], x.shape[1]
        if self.config.topology == "one_to_one":
            # every frame is its own one-step sequence from the initial state
            frames = x.reshape(batch * time, 1, x.shape[-1])
            y, _ = self._run(frames, self.init_state(batch * time, device=x.device))
            return self.head(self._drop(y, self.config.output_dropout)).reshape(batch, time, -1), ()
        if state is None or len(state) == 0:
            state = self.init_state(batch, device=x.device)
        y, state = self._run(x, state)  # (batch, time, hidden)
        return self.head(self._drop(y, self.config.output_dropout)), state

    def final_state(self, x: torch.Tensor, lengths: torch.Tensor) -> State:
        """The state after each row's ``lengths`` valid frames, as if encoded alone.

        ``x`` is ``(batch, time[, features])`` padded after ``lengths`` ``(batch,)``; the
        padding never enters the state (the rows are packed). Returns tensors
        ``(layers, batch, hidden)`` in input order.
        """
        return self.run_packed(x, lengths)[1]

    def run_packed(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, State]:
        """Outputs ``(batch, time, output_size)`` (zeros after each row's ``lengths``) and
        the final state of padded rows, each as if run alone (see :meth:`final_state`)."""
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

        if self.embed is not None:
            x = self.embed(x)  # (batch, time, input_size)
        x = self._drop(x, self.config.input_dropout)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        start = self.init_state(x.shape[0], device=x.device)
        # nn.RNN/GRU take h, nn.LSTM takes (h, c); both unsort the final state to input order
        out, final = self.rnn(packed, start if len(start) == 2 else start[0])
        y, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        state = tuple(final) if isinstance(final, tuple) else (final,)
        return self.head(self._drop(y, self.config.output_dropout)), state

    def _drop(self, x: torch.Tensor, p: float) -> torch.Tensor:
        """Dropout ``p`` while training; the identity in eval mode (so no exported graph
        contains it) and when ``p`` is 0."""
        return nn.functional.dropout(x, p, training=True) if p and self.training else x

    def _run(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if self.config.cell == "lstm":
            y, (h, c) = self.rnn(x, (state[0], state[1]))
            return y, (h, c)
        y, h = self.rnn(x, state[0])
        return y, (h,)


class Attention(nn.Module):
    """Global attention of a decoder's outputs over a memory (Luong et al., 2015).

    For each decoder output ``q_t`` (the query) every memory row ``m_s`` gets a score,
    ``dot``: ``q·m``, ``general``: ``q·W m``, ``additive`` (Bahdanau's): ``v·tanh(W q + U m)``;
    the softmax over valid rows weights the context ``c_t = Σ a_ts m_s``, and
    ``tanh(W_c [c_t; q_t])`` replaces ``q_t``. The query is the recurrent layer's output,
    so attention adds no state of its own: a decoder with it streams token by token.
    """

    def __init__(self, kind: str, query_size: int, memory_size: int) -> None:
        super().__init__()
        if kind not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {kind!r}")
        if kind == "dot" and query_size != memory_size:
            raise ValueError(
                f"dot attention needs the memory size ({memory_size}, the encoder's "
                f"output_size) to equal the decoder's hidden size ({query_size}); use "
                "'general' or 'additive', or make them equal"
            )
        self.kind = kind
        self.key = (
            None if kind == "dot" else nn.Linear(memory_size, query_size, bias=kind == "additive")
        )
        self.query = nn.Linear(query_size, query_size, bias=False) if kind == "additive" else None
        self.score = nn.Linear(query_size, 1, bias=False) if kind == "additive" else None
        self.combine = nn.Linear(query_size + memory_size, query_size)

    def forward(
        self, query: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``query`` (batch, T, Q), ``memory`` (batch, S, M), ``mask`` (batch, S) float, a row
        counting where > 0.5 -> (attentional outputs (batch, T, Q), weights (batch, T, S)).
        A memory with no valid row gives uniform weights."""
        keys = memory if self.key is None else self.key(memory)  # (batch, S, Q)
        if self.score is None:
            scores = query @ keys.transpose(1, 2)  # (batch, T, S)
        else:
            assert self.query is not None
            joint = torch.tanh(self.query(query)[:, :, None] + keys[:, None])  # (batch, T, S, Q)
            scores = self.score(joint).squeeze(-1)  # (batch, T, S)
        valid = (mask > 0.5)[:, None, :]  # (batch, 1, S)
        scores = torch.where(valid, scores, torch.full_like(scores, -1e9))
        weights = torch.softmax(scores, dim=-1)  # (batch, T, S)
        context = weights @ memory  # (batch, T, M)
        return torch.tanh(self.combine(torch.cat([context, query], dim=-1))), weights


class AttentionDecoder(SeqModel):
    """A token decoder that attends over a memory; its state is ``(*rnn state, memory, mask)``.

    ``forward(x, state)`` keeps :class:`SeqModel`'s signature: the memory ``(batch, S, M)``
    and its mask ``(batch, S)`` (1 for valid rows, 0 for padding) ride at the end of the
    state tuple and come back unchanged, so training loops and the exported graph carry
    them like recurrent state. ``config.extra["attention"]`` is the score kind,
    ``config.extra["memory_size"]`` is ``M`` and ``config.extra["memory_dropout"]`` (default
    0) the dropout on the memory while training.
    """

    def __init__(self, config: SeqConfig) -> None:
        super().__init__(config)
        kind, size = config.extra.get("attention"), config.extra.get("memory_size")
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"config.extra['memory_size'] must be a positive int, got {size!r}")
        self.memory_dropout = float(config.extra.get("memory_dropout", 0.0))
        if not 0.0 <= self.memory_dropout < 1.0:
            raise ValueError(f"memory_dropout must be in [0, 1), got {self.memory_dropout!r}")
        self.attention = Attention(str(kind), config.hidden_size, size)

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        n = len(self.config.state_names)
        if state is None or len(state) != n + 2:
            raise ValueError(
                f"an attention decoder's state is ({', '.join(self.config.state_names)}, "
                f"memory, mask): {n + 2} tensors, got {0 if state is None else len(state)}. "
                "Start it from Seq2Seq.encode(src)."
            )
        y, rnn_state, _ = self.attend(x, state[-2], state[-1], state[:n])
        return y, (*rnn_state, state[-2], state[-1])

    def attend(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        mask: torch.Tensor,
        rnn_state: State | None = None,
    ) -> tuple[torch.Tensor, State, torch.Tensor]:
        """Logits ``(batch, T, vocab)``, the recurrent state, and the attention weights
        ``(batch, T, S)`` for tokens ``x`` ``(batch, T)``."""
        if self.embed is not None:
            x = self.embed(x)  # (batch, T, input_size)
        x = self._drop(x, self.config.input_dropout)
        if rnn_state is None:  # the layer's own start (an exporter supplies it)
            y, final = self.rnn(x)
            rnn_state = tuple(final) if isinstance(final, tuple) else (final,)
        else:
            y, rnn_state = self._run(x, rnn_state)  # (batch, T, hidden)
        out, weights = self.attention(y, self._drop(memory, self.memory_dropout), mask)
        return self.head(self._drop(out, self.config.output_dropout)), rnn_state, weights


class Seq2Seq(nn.Module):
    """Encoder-decoder: the encoder's final state starts the decoder.

    ``encoder`` reads source frames or tokens; ``decoder`` is a token model whose
    ``output_size`` is the target vocabulary. Both must share cell, layers and hidden size.
    With ``attention`` (one of :data:`ATTENTIONS`) the decoder is an
    :class:`AttentionDecoder` over the encoder's per-frame outputs (``encoder.output_size``
    wide), and its state carries that memory and its mask; ``memory_dropout`` drops memory
    features while training.
    """

    def __init__(
        self,
        encoder: SeqConfig,
        decoder: SeqConfig,
        attention: str | None = None,
        memory_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for name in ("cell", "layers", "hidden_size"):
            if getattr(encoder, name) != getattr(decoder, name):
                raise ValueError(f"encoder and decoder must share {name}")
        self.encoder = SeqModel(encoder)
        self.attention = attention
        if attention is None:
            if memory_dropout:
                raise ValueError("memory_dropout needs attention (there is no memory without it)")
            self.decoder = SeqModel(decoder)
        else:
            extra = {**decoder.extra, "attention": attention, "memory_size": encoder.output_size}
            if memory_dropout:  # absent unless set, so older configs stay as they were
                extra["memory_dropout"] = memory_dropout
            self.decoder = AttentionDecoder(replace(decoder, extra=extra))

    def encode(self, src: torch.Tensor, lengths: torch.Tensor | None = None) -> State:
        """The decoder's first state from ``src`` ``(batch, S[, F])``; with ``lengths``
        ``(batch,)`` each padded row is encoded as if alone. With attention the state ends
        with the memory ``(batch, S, M)`` and its mask ``(batch, S)``."""
        if lengths is None:
            lengths = torch.full((src.shape[0],), src.shape[1], dtype=torch.long)
            if self.attention is None:
                return self.encoder(src)[1]
        if self.attention is None:
            return self.encoder.final_state(src, lengths)
        memory, state = self.encoder.run_packed(src, lengths)  # (batch, S, M)
        mask = torch.arange(src.shape[1], device=src.device)[None] < lengths.to(src.device)[:, None]
        return (*state, memory, mask.to(memory.dtype))

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: ``tgt_in`` ``(batch, T)`` -> logits ``(batch, T, vocab)``."""
        y, _ = self.decoder(tgt_in, self.encode(src))
        return y
