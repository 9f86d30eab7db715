"""nn.RNNCell / nn.LSTMCell / nn.GRUCell stepped in a Python time loop, as streamed modules.

Tutorials write ``h = zeros(...); for t in range(T): h = cell(x[:, t], h)``. The loop body is
the streamed step: the first step of a call starts from the cell's state input instead of
the zeros the forward made, and the last step's state is the state output (named
``state_in.<cell path>.h``/``.c``, shaped ``(1, batch, hidden)`` like a one-layer
recurrent layer). Each step runs through the mode's runner on a one-layer nn.RNN/LSTM/GRU
that shares the cell's weights: a native ONNX op of one frame, or basic ops. Steps past a
row's valid frames leave its state unchanged (``lengths``), so padded and batched calls
stay exact.

The probe runs check that the cell is stepped once per frame and that the loop feeds each
step exactly what the previous one returned; otherwise the state cannot be isolated and
the model is refused with the way out (``forward(x, state) -> (y, state)``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edgeseq.errors import ExportError
from edgeseq.exporters._proxy import LayerRunner, Probe, StreamProxy

__all__ = ["CellProxy", "layer_of"]

_KIND = {nn.LSTMCell: "lstm", nn.GRUCell: "gru", nn.RNNCell: "rnn"}


def layer_of(cell: nn.RNNCellBase) -> nn.RNNBase:
    """A one-layer, batch-first nn.LSTM/GRU/RNN sharing ``cell``'s parameters."""
    size = (cell.input_size, cell.hidden_size)
    if isinstance(cell, nn.LSTMCell):
        layer: nn.RNNBase = nn.LSTM(*size, bias=cell.bias, batch_first=True)
    elif isinstance(cell, nn.GRUCell):
        layer = nn.GRU(*size, bias=cell.bias, batch_first=True)
    else:
        layer = nn.RNN(*size, bias=cell.bias, batch_first=True, nonlinearity=cell.nonlinearity)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        p = getattr(cell, name, None)
        if p is not None:
            setattr(layer, f"{name}_l0", p)  # shared, not copied
    return layer


class CellProxy(StreamProxy):
    """Stands in for one cell; its state is ``(1, batch, hidden)`` per name, batch axis 1."""

    style = "cell_loop"

    def __init__(self, cell: nn.RNNCellBase, path: str, runner: LayerRunner) -> None:
        super().__init__(cell, path, runner)
        self.cell = next(v for k, v in _KIND.items() if isinstance(cell, k))
        self.layer = layer_of(cell)
        self.refusal: str | None = None

    @property
    def state_names(self) -> tuple[str, ...]:
        return ("h", "c") if self.cell == "lstm" else ("h",)

    def one_step(self) -> bool:
        return True

    def forward(self, x: torch.Tensor, hx=None):  # signature mirrors nn.RNNCellBase
        step = self.calls
        self.calls += 1
        if x.dim() != 2:
            raise ExportError(
                f"cell {self.path!r} got an input of shape {tuple(x.shape)}; edgeseq streams "
                "cells stepped on batched frames (batch, features)."
            )
        given = None
        if hx is not None:
            given = tuple(t.unsqueeze(0) for t in (hx if isinstance(hx, (tuple, list)) else (hx,)))
        state = given
        if step == 0:
            self.user_state = given
            if self.state_in is not None:
                state = self.state_in
        if state is None:
            zeros = x.new_zeros(1, x.shape[0], self.module.hidden_size)
            state = (zeros, zeros) if self.cell == "lstm" else (zeros,)
        if step == 0 and self.state_in is None:
            self.initial = state
        _, out = self.runner(self.layer, x.unsqueeze(1), state, self._step_lengths(x, step))
        self.state_out = out
        if self.probe is not None:
            self.probe.inputs.append(given)
            self.probe.outputs.append(out)
        h = out[0][0]  # (batch, hidden)
        return (h, out[1][0]) if self.cell == "lstm" else h

    def _step_lengths(self, x: torch.Tensor, step: int) -> torch.Tensor | None:
        """``(batch,)`` 1 where frame ``step`` is valid, else 0: padding keeps the state."""
        if self.lengths is None or self.frames is None:
            return None
        if x.shape[0] != self.frames[0] or step >= self.frames[1]:
            return None
        return (self.lengths > step).to(torch.int32)

    def settle(self, probes: list[Probe]) -> None:
        kind = type(self.module).__name__
        counts = [len(p.inputs) for p in probes]
        if not counts[0]:
            self.refusal = (
                f"cell {self.path!r} ({kind}) was not called by model.forward(example); "
                "remove unused cells."
            )
            return
        if any(n != p.frames for n, p in zip(counts, probes)):
            shown = f"{counts[0]} times for {probes[0].frames} frames"
            self.refusal = (
                f"cell {self.path!r} ({kind}) is stepped {shown}; edgeseq streams a cell "
                "stepped once per frame (for t in range(x.shape[1])). Carry the state "
                "yourself instead: forward(x, state=None) -> (y, state)."
            )
            return
        a = probes[0]
        fed = a.inputs[1:]
        if all(g is None for g in fed) and len(fed):
            self.carry = False  # every step starts from zeros: nothing recurs
            return
        if self.carry and not all(
            g is not None and all(torch.equal(u, v) for u, v in zip(g, prev))
            for g, prev in zip(fed, a.outputs)
        ):
            self.refusal = (
                f"cell {self.path!r} ({kind}): the loop changes its state between steps (what "
                "it passes at step t+1 is not what the cell returned at step t, e.g. a norm "
                "or mask on h), so edgeseq cannot tell what to carry. Carry the state "
                "yourself: forward(x, state=None) -> (y, state)."
            )

    def how(self, mode: str) -> str:
        if self.refusal:
            return self.refusal
        kind = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[self.cell]
        if mode == "unrolled":
            return f"cell loop: each step's {kind} cell in basic ops, masked by lengths"
        return f"cell loop: one step per graph call, a native ONNX {kind} op of one frame"

    def facts(self) -> dict[str, Any]:
        return {**super().facts(), "cell": self.cell}
