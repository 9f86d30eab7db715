"""nn.RNN / nn.LSTM / nn.GRU layers as streamed modules: their (h[, c]) become state pairs.

The proxy takes its initial state from the adapter's inputs and hands its final state
back as outputs; whatever state the user's forward passes to the layer is used only to
learn the stream's initial value, then replaced. How the layer runs (native op, unrolled
cell) is the mode's :data:`~edgeseq.exporters._proxy.LayerRunner`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from edgeseq.errors import ExportError
from edgeseq.exporters._proxy import LayerRunner, Probe, StreamProxy

__all__ = [
    "LayerInfo",
    "NativeRunner",
    "RecurrentProxy",
    "find_recurrent_layers",
    "layer_info",
    "zeros_state",
]


def NativeRunner(
    rnn: nn.RNNBase, x: torch.Tensor, state: tuple[torch.Tensor, ...], lengths: torch.Tensor | None
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Run the layer itself; torch.onnx turns it into an ONNX LSTM/GRU/RNN node.

    ``lengths`` is wired into the node's ``sequence_lens`` after export (see _onnx.py).
    Run eagerly with ``lengths`` (the export's checks of batched calls), each row stops
    after its valid frames, as the node does, and a row without frames keeps its state.
    """
    if lengths is not None and not _tracing():
        steps = x.shape[1] if rnn.batch_first else x.shape[0]
        if bool((lengths != steps).any()):
            return _rows_alone(rnn, x, state, lengths)
    if rnn.mode == "LSTM":
        y, (h, c) = rnn(x, (state[0], state[1]))
        return y, (h, c)
    y, h = rnn(x, state[0])
    return y, (h,)


def _tracing() -> bool:
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def _rows_alone(
    rnn: nn.RNNBase, x: torch.Tensor, state: tuple[torch.Tensor, ...], lengths: torch.Tensor
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Eager ``sequence_lens``: every row run on its own valid frames (zeros after them)."""
    xs = x if rnn.batch_first else x.transpose(0, 1)  # (batch, T, in)
    size = (getattr(rnn, "proj_size", 0) or rnn.hidden_size) * (2 if rnn.bidirectional else 1)
    ys, finals = [], []
    for r, n in enumerate(lengths.tolist()):
        row_state = tuple(s[:, r : r + 1] for s in state)
        y_r = xs.new_zeros(1, xs.shape[1], size)  # (1, T, size): zeros after the valid frames
        if n:
            row = xs[r : r + 1, :n]
            y_n, row_state = NativeRunner(
                rnn, row if rnn.batch_first else row.transpose(0, 1), row_state, None
            )
            y_r[:, :n] = y_n if rnn.batch_first else y_n.transpose(0, 1)
        ys.append(y_r)
        finals.append(row_state)
    y = torch.cat(ys, dim=0)
    final = tuple(torch.cat([f[i] for f in finals], dim=1) for i in range(len(state)))
    return (y if rnn.batch_first else y.transpose(0, 1)), final


@dataclass(frozen=True)
class LayerInfo:
    """One recurrent layer found in a module: its path and what it is."""

    path: str
    cell: str  # rnn, lstm, gru
    layers: int
    hidden_size: int
    bidirectional: bool
    batch_first: bool
    proj_size: int = 0

    @property
    def state_names(self) -> tuple[str, ...]:
        return ("h", "c") if self.cell == "lstm" else ("h",)


def layer_info(path: str, mod: nn.RNNBase) -> LayerInfo:
    return LayerInfo(
        path=path or "rnn",
        cell={"RNN_TANH": "rnn", "RNN_RELU": "rnn"}.get(mod.mode, mod.mode.lower()),
        layers=mod.num_layers,
        hidden_size=mod.hidden_size,
        bidirectional=mod.bidirectional,
        batch_first=mod.batch_first,
        proj_size=getattr(mod, "proj_size", 0),
    )


def find_recurrent_layers(model: nn.Module) -> list[LayerInfo]:
    """Every nn.RNN / nn.LSTM / nn.GRU in ``model``, in registration order."""
    return [layer_info(p, m) for p, m in model.named_modules() if isinstance(m, nn.RNNBase)]


def zeros_state(rnn: nn.RNNBase, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The layer's default initial state for input ``x``: zeros ``(layers*dirs, batch, size)``."""
    batch = x.shape[0] if rnn.batch_first else x.shape[1]
    dirs = 2 if rnn.bidirectional else 1
    h_size = rnn.proj_size if getattr(rnn, "proj_size", 0) else rnn.hidden_size
    h = x.new_zeros(rnn.num_layers * dirs, batch, h_size)
    if rnn.mode == "LSTM":
        return (h, x.new_zeros(rnn.num_layers * dirs, batch, rnn.hidden_size))
    return (h,)


class RecurrentProxy(StreamProxy):
    """Stands in for one recurrent layer; state ``(layers*dirs, batch, size)`` per name."""

    style = "recurrent"

    def __init__(self, rnn: nn.RNNBase, path: str, runner: LayerRunner) -> None:
        super().__init__(rnn, path, runner)
        self.info = layer_info(path, rnn)
        self.refusal: str | None = None
        self.stepped = False  # called once per frame in a Python loop (settle() decides)

    @property
    def rnn(self) -> nn.RNNBase:
        return self.module  # type: ignore[return-value]

    @property
    def state_names(self) -> tuple[str, ...]:
        return self.info.state_names

    def forward(self, x: torch.Tensor, hx=None):  # signature mirrors nn.RNNBase
        if isinstance(x, PackedSequence):
            raise ExportError(
                f"layer {self.path!r} received a PackedSequence (pack_padded_sequence). "
                "Streaming export needs padded tensors: pass (batch, time, features) to the "
                "layer and let edgeseq carry valid lengths (the graph's `lengths` input), or "
                "unpack before the layer."
            )
        step = self.calls
        self.calls += 1  # more than once: a per-frame loop (settle() checks it) or refused
        given = None
        if hx is not None:
            given = tuple(hx) if isinstance(hx, tuple) else (hx,)
        if step == 0:
            self.user_state = given
        state = self.state_in if step == 0 else None
        if state is None:  # plain forward, e.g. while probing initial states
            state = given or zeros_state(self.rnn, x)
            if step == 0:
                self.initial = state
        lengths = self._step_lengths(x, step) if self.stepped else self._aligned_lengths(x)
        y, out = self.runner(self.rnn, x, state, lengths)
        self.state_out = out
        if self.probe is not None:
            self.probe.inputs.append(given)
            self.probe.outputs.append((self._steps(x), out))
        return y, (out if self.info.cell == "lstm" else out[0])

    def _steps(self, x: torch.Tensor) -> int:
        return int(x.shape[1] if self.rnn.batch_first else x.shape[0])

    def _called_again(self) -> str:
        kind = type(self.module).__name__
        attr = self.path.rpartition(".")[2]
        return (
            f"layer {self.path!r} ({kind}) is called more than once per forward, but not once "
            "per frame on one frame with the state it returned, so edgeseq cannot tell which "
            f"call's state to carry. Call it once on the whole sequence (y, _ = self.{attr}"
            f"(x)), or once per frame feeding back its state (for t in range(x.shape[1]): "
            f"y, s = self.{attr}(x[:, t:t+1], s)), or carry the state yourself: "
            "forward(x, state=None) -> (y, state)."
        )

    def settle(self, probes: list[Probe]) -> None:
        """One call per forward, or one per frame of one frame each, fed its own state."""
        if all(len(p.inputs) <= 1 for p in probes):
            return
        per_frame = all(
            len(p.inputs) == p.frames and all(n == 1 for n, _ in p.outputs) for p in probes
        )
        a = probes[0]
        if per_frame and all(g is None for g in a.inputs[1:]):
            self.carry = False  # every step starts from zeros: nothing recurs
            self.stepped = True
            return
        fed = all(
            g is not None and all(torch.equal(u, v) for u, v in zip(g, prev))
            for g, (_, prev) in zip(a.inputs[1:], a.outputs)
        )
        if per_frame and (fed or not self.carries):
            self.stepped = True  # the loop body is the step, as for a cell loop
        elif per_frame:
            self.refusal = (
                f"layer {self.path!r} ({type(self.module).__name__}) is stepped once per frame, "
                "but the loop changes its state between steps (what it gets at step t+1 is not "
                "what it returned at step t, e.g. a norm or mask on h), so edgeseq cannot tell "
                "what to carry. Carry the state yourself: forward(x, state=None) -> (y, state)."
            )
        elif self.carries:
            self.refusal = self._called_again()

    def one_step(self) -> bool:
        return self.stepped

    def _step_lengths(self, x: torch.Tensor, step: int) -> torch.Tensor | None:
        """``(batch,)`` 1 where frame ``step`` is valid, else 0: padding keeps the state."""
        if self.lengths is None or self.frames is None:
            return None
        b = x.shape[0] if self.rnn.batch_first else x.shape[1]
        if b != self.frames[0] or step >= self.frames[1] or self._steps(x) != 1:
            return None
        return (self.lengths > step).to(torch.int32)

    def _aligned_lengths(self, x: torch.Tensor) -> torch.Tensor | None:
        """``lengths`` if this layer sees the graph's own (batch, time) frames, else None.

        A model that reshapes frames before the layer (e.g. every frame as its own
        one-step sequence) has rows that are not the graph's rows: no mask applies.
        """
        if self.lengths is None or self.frames is None:
            return None
        b, t = (x.shape[0], x.shape[1]) if self.rnn.batch_first else (x.shape[1], x.shape[0])
        return self.lengths if (b, t) == self.frames else None

    def how(self, mode: str) -> str:
        kind = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[self.info.cell]
        if self.refusal:
            return self.refusal
        if self.stepped and mode == "unrolled":
            return f"stepped per frame: each step's {kind} cell in basic ops, masked by lengths"
        if self.stepped:
            return f"stepped per frame: one step per graph call, a native ONNX {kind} op"
        if mode == "unrolled":
            return f"unrolled: {kind} cell in basic ops, masked by lengths"
        return f"native ONNX {kind} op"

    def facts(self) -> dict[str, Any]:
        return {**super().facts(), "cell": self.info.cell, "stepped": self.stepped}
