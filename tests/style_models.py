"""Tiny user-style models for every stream style (no tests here), written the way tutorials
and papers write them: causal convolutions, cells stepped in a Python loop, explicit state.

``build(style, cell, config)`` returns one, for the configuration matrix and the style tests.
Every forward takes batch-first ``x`` ``(batch, time, 3)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CONFIGS", "build", "build_centered", "build_conv", "build_proj"]

FEATURES, HIDDEN, OUT = 3, 5, 2
LAYER = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
CELL = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}


class CausalConv(nn.Module):
    """A causal Conv1d over ``(batch, channels, time)``: left padding, or padding + trim."""

    def __init__(self, c_in: int, c_out: int, k: int, d: int = 1, how: str = "pad") -> None:
        super().__init__()
        self.how, self.reach = how, (k - 1) * d
        pad = self.reach if how == "trim" else 0
        self.conv = nn.Conv1d(c_in, c_out, k, dilation=d, padding=pad)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.how == "pad":
            return self.conv(F.pad(z, (self.reach, 0)))
        if self.how == "trim":
            return self.conv(z)[..., : -self.reach]  # drop the outputs that read the right pad
        return self.conv(z)


class ConvRNN(nn.Module):
    """Causal conv front-end (dilated, stacked), a recurrent layer, and a conv after it.

    ``where`` puts convolutions ``before``, ``between`` (two recurrent layers) or ``after``.
    """

    def __init__(self, cell: str, where: str = "before", how: str = "pad") -> None:
        super().__init__()
        self.where = where
        self.front = nn.Sequential(
            CausalConv(FEATURES, 4, 3, 1, how), nn.ReLU(), CausalConv(4, 4, 3, 2, how)
        )
        self.rnn = LAYER[cell](4 if where == "before" else FEATURES, HIDDEN, batch_first=True)
        self.mid = CausalConv(HIDDEN, HIDDEN, 2, 1, how) if where != "before" else None
        self.rnn2 = LAYER[cell](HIDDEN, HIDDEN, batch_first=True) if where == "between" else None
        self.head = nn.Linear(HIDDEN, OUT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.where == "before":
            x = torch.relu(self.front(x.transpose(1, 2))).transpose(1, 2)
        y, _ = self.rnn(x)
        if self.mid is not None:
            y = torch.tanh(self.mid(y.transpose(1, 2))).transpose(1, 2)
        if self.rnn2 is not None:
            y, _ = self.rnn2(y)
        return self.head(y)


class TCN(nn.Module):
    """Residual dilated causal convolutions only (no recurrent layer)."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Conv1d(FEATURES, 6, 1)
        self.blocks = nn.ModuleList([CausalConv(6, 6, 3, d) for d in (1, 2, 4)])
        self.head = nn.Conv1d(6, OUT, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.inp(x.transpose(1, 2))
        for block in self.blocks:
            z = z + torch.relu(block(z))
        return self.head(z).transpose(1, 2)


class CellLoop(nn.Module):
    """Cells stepped in ``for t in range(T)``, state made as zeros inside forward."""

    def __init__(self, cell: str, stacked: bool = False) -> None:
        super().__init__()
        self.kind = cell
        self.cell = CELL[cell](FEATURES, HIDDEN)
        self.cell2 = CELL[cell](HIDDEN, HIDDEN) if stacked else None
        self.head = nn.Linear(HIDDEN, OUT)

    def _step(self, cell: nn.Module, x: torch.Tensor, state):
        if self.kind == "lstm":
            return cell(x, state)
        return cell(x, state[0]), None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        zeros = torch.zeros(x.shape[0], HIDDEN)
        s1 = (zeros, zeros)
        s2 = (zeros, zeros)
        outs = []
        for t in range(x.shape[1]):
            h, c = self._step(self.cell, x[:, t], s1)
            s1 = (h, c)
            if self.cell2 is not None:
                h, c = self._step(self.cell2, h, s2)
                s2 = (h, c)
            outs.append(self.head(h))
        return torch.stack(outs, dim=1)


class Explicit(nn.Module):
    """``forward(x, state=None) -> (y, state)``; ``structure`` picks the state's form.

    ``layer``: whatever one layer returns (a tensor, or LSTM's (h, c) tuple);
    ``per_layer``: a list of per-layer states for two layers; ``dict``: {"enc": ..., "dec": ...};
    ``learned``: a learned initial state used when state is None.
    """

    def __init__(self, cell: str, structure: str = "layer") -> None:
        super().__init__()
        self.structure = structure
        two = structure in ("per_layer", "dict")
        self.l1 = LAYER[cell](FEATURES, HIDDEN, batch_first=True)
        self.l2 = LAYER[cell](HIDDEN, HIDDEN, batch_first=True) if two else None
        self.head = nn.Linear(HIDDEN, OUT)
        g = torch.Generator().manual_seed(1)
        self.h0 = nn.Parameter(torch.randn(1, 1, HIDDEN, generator=g))
        self.lstm = cell == "lstm"

    def _initial(self, batch: int):
        h = self.h0.expand(-1, batch, -1).contiguous()
        return (h, torch.tanh(h)) if self.lstm else h

    def forward(self, x: torch.Tensor, state=None):
        if self.structure == "layer":
            y, state = self.l1(x, state)
            return self.head(y), state
        if self.structure == "learned":
            y, state = self.l1(x, self._initial(x.shape[0]) if state is None else state)
            return self.head(y), state
        if self.structure == "per_layer":
            first, second = state if state is not None else (None, None)
            y, s1 = self.l1(x, first)
            y, s2 = self.l2(y, second)  # type: ignore[misc]
            return self.head(y), [s1, s2]
        state = state or {}
        y, s1 = self.l1(x, state.get("enc"))
        y, s2 = self.l2(y, state.get("dec"))  # type: ignore[misc]
        return self.head(y), {"enc": s1, "dec": s2}


# style -> config -> builder(cell)
CONFIGS = {
    "conv_cache": {
        "pad_before": lambda cell: ConvRNN(cell, "before", "pad"),
        "trim_before": lambda cell: ConvRNN(cell, "before", "trim"),
        "between": lambda cell: ConvRNN(cell, "between", "pad"),
        "after": lambda cell: ConvRNN(cell, "after", "trim"),
        "tcn": lambda cell: TCN(),
    },
    "cell_loop": {
        "loop": lambda cell: CellLoop(cell),
        "stacked": lambda cell: CellLoop(cell, stacked=True),
    },
    "explicit_state": {
        "layer": lambda cell: Explicit(cell, "layer"),
        "per_layer": lambda cell: Explicit(cell, "per_layer"),
        "dict": lambda cell: Explicit(cell, "dict"),
        "learned": lambda cell: Explicit(cell, "learned"),
    },
}


def build(style: str, cell: str, config: str) -> nn.Module:
    torch.manual_seed(0)
    return CONFIGS[style][config](cell)


def build_conv() -> nn.Module:
    """A factory for ``edgeseq export --factory style_models:build_conv``."""
    return build("conv_cache", "gru", "pad_before").eval()


def build_centered() -> nn.Module:
    """A factory whose front-end convolution looks one frame ahead (refused)."""
    torch.manual_seed(0)
    model = ConvRNN("gru", "before", "pad")
    model.front[2].conv.padding = (2,)  # centered: kernel 3, dilation 2 sees t+2
    model.front[2].how = "none"
    return model.eval()


def build_proj() -> nn.Module:
    """An LSTM with proj_size, which ONNX's LSTM op cannot express natively."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(FEATURES, 4), _Take(nn.LSTM(4, HIDDEN, proj_size=2)))


class _Take(nn.Module):
    """``layer(x)[0]`` for a sequence-first layer fed batch-first frames."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.transpose(0, 1))[0].transpose(0, 1)
