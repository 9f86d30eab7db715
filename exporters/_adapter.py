"""Make any module with nn.RNN/LSTM/GRU layers streamable without touching its code.

Every recurrent layer is swapped (in a deep copy) for a :class:`_RecurrentProxy` that
takes its initial state from the adapter's inputs and hands its final state back as
outputs. The user's ``forward(x)`` runs unchanged: whatever state it passes to the
layer is used only to learn the stream's initial value, then replaced.

How a layer runs (native op, unrolled cell) is a :class:`LayerRunner`, so the export
algorithm is written once for every mode.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from edgeseq.errors import ExportError

__all__ = [
    "BareLayer",
    "LayerInfo",
    "LayerRunner",
    "NativeRunner",
    "StreamAdapter",
    "as_streamable",
    "eager",
    "find_recurrent_layers",
]

# A runner computes (y, state_out) for one layer from (x, state_in, lengths).
LayerRunner = Callable[
    [nn.RNNBase, torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor | None],
    tuple[torch.Tensor, tuple[torch.Tensor, ...]],
]


@contextlib.contextmanager
def eager() -> Iterator[None]:
    """No autograd, and oneDNN off for the many small eager runs of export and verify.

    oneDNN builds a recurrent kernel for every new input shape (~20 ms each for a tiny
    LSTM, against ~1 ms for torch's own kernel), and probing, the chunked-parity check and
    verification run many shapes once each.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # flags() warns about Intel GPUs on CPU builds
        with torch.backends.mkldnn.flags(enabled=False), torch.no_grad():
            yield


def NativeRunner(
    rnn: nn.RNNBase, x: torch.Tensor, state: tuple[torch.Tensor, ...], lengths: torch.Tensor | None
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Run the layer itself; torch.onnx turns it into an ONNX LSTM/GRU/RNN node.

    ``lengths`` is wired into the node's ``sequence_lens`` after export (see _onnx.py).
    """
    if rnn.mode == "LSTM":
        y, (h, c) = rnn(x, (state[0], state[1]))
        return y, (h, c)
    y, h = rnn(x, state[0])
    return y, (h,)


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


def find_recurrent_layers(model: nn.Module) -> list[LayerInfo]:
    """Every nn.RNN / nn.LSTM / nn.GRU in ``model``, in registration order."""
    found = []
    for path, mod in model.named_modules():
        if isinstance(mod, nn.RNNBase):
            found.append(
                LayerInfo(
                    path=path or "rnn",
                    cell={"RNN_TANH": "rnn", "RNN_RELU": "rnn"}.get(mod.mode, mod.mode.lower()),
                    layers=mod.num_layers,
                    hidden_size=mod.hidden_size,
                    bidirectional=mod.bidirectional,
                    batch_first=mod.batch_first,
                    proj_size=getattr(mod, "proj_size", 0),
                )
            )
    return found


class _RecurrentProxy(nn.Module):
    """Stands in for one recurrent layer; state flows through ``state_in``/``state_out``."""

    def __init__(self, rnn: nn.RNNBase, info: LayerInfo, runner: LayerRunner) -> None:
        super().__init__()
        self.rnn = rnn
        self.info = info
        self.runner = runner
        self.state_in: tuple[torch.Tensor, ...] | None = None
        self.state_out: tuple[torch.Tensor, ...] | None = None
        self.lengths: torch.Tensor | None = None
        self.frames: tuple[int, int] | None = None  # the graph input's (batch, time)
        self.user_state: tuple[torch.Tensor, ...] | None = None
        self.initial: tuple[torch.Tensor, ...] | None = None  # what a plain forward started from
        self.calls = 0

    def __getattr__(self, name: str):
        """User code reads the layer's attributes (hidden_size, num_layers...): delegate."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["rnn"], name)

    def forward(self, x: torch.Tensor, hx=None):  # signature mirrors nn.RNNBase
        if isinstance(x, PackedSequence):
            raise ExportError(
                f"layer {self.info.path!r} received a PackedSequence (pack_padded_sequence). "
                "Streaming export needs padded tensors: pass (batch, time, features) to the "
                "layer and let edgeseq carry valid lengths (the graph's `lengths` input), or "
                "unpack before the layer."
            )
        self.calls += 1
        if self.calls > 1:
            raise ExportError(
                f"layer {self.info.path!r} is called more than once per forward; edgeseq "
                "streams layers that run once per call. Use separate layers instead."
            )
        if hx is not None:
            self.user_state = tuple(hx) if isinstance(hx, tuple) else (hx,)
        state = self.state_in
        if state is None:  # plain forward, e.g. while probing initial states
            state = self.user_state or _zeros_state(self.rnn, x)
            self.initial = state
        y, out = self.runner(self.rnn, x, state, self._aligned_lengths(x))
        self.state_out = out
        return y, (out if self.info.cell == "lstm" else out[0])

    def _aligned_lengths(self, x: torch.Tensor) -> torch.Tensor | None:
        """``lengths`` if this layer sees the graph's own (batch, time) frames, else None.

        A model that reshapes frames before the layer (e.g. every frame as its own
        one-step sequence) has rows that are not the graph's rows: no mask applies.
        """
        if self.lengths is None or self.frames is None:
            return None
        b, t = (x.shape[0], x.shape[1]) if self.rnn.batch_first else (x.shape[1], x.shape[0])
        return self.lengths if (b, t) == self.frames else None


def _zeros_state(rnn: nn.RNNBase, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    batch = x.shape[0] if rnn.batch_first else x.shape[1]
    dirs = 2 if rnn.bidirectional else 1
    h_size = rnn.proj_size if getattr(rnn, "proj_size", 0) else rnn.hidden_size
    h = x.new_zeros(rnn.num_layers * dirs, batch, h_size)
    if rnn.mode == "LSTM":
        return (h, x.new_zeros(rnn.num_layers * dirs, batch, rnn.hidden_size))
    return (h,)


class StreamAdapter(nn.Module):
    """``forward(x, [lengths,] *state_in) -> (*outputs, *state_out)`` around a user module.

    ``x`` is ``(batch, time, ...)``; ``lengths`` ``(batch,)`` int32 valid frames, an input
    only for runners that mask (native nodes get it wired after export); each state is
    ``(layers*dirs, batch, hidden)``.
    """

    def __init__(
        self,
        model: nn.Module,
        runner: LayerRunner = NativeRunner,
        takes_lengths: bool = False,
        carry_state: bool = True,
    ) -> None:
        super().__init__()
        self.takes_lengths = takes_lengths
        self.carry_state = carry_state  # False: offline, each call starts from the initial state
        self.inner = copy.deepcopy(model).eval()
        self.layers = find_recurrent_layers(self.inner)
        self.proxies: list[_RecurrentProxy] = []
        for info in self.layers:
            parent_path, _, attr = info.path.rpartition(".")
            parent = self.inner.get_submodule(parent_path) if parent_path else self.inner
            rnn = getattr(parent, attr) if attr else self.inner
            proxy = _RecurrentProxy(rnn, info, runner)
            setattr(parent, attr, proxy)
            self.proxies.append(proxy)
        self.n_outputs: int | None = None

    # (path, state name) for every carried tensor, in input order
    def state_keys(self) -> list[tuple[str, str]]:
        if not self.carry_state:
            return []
        return [(i.path, n) for i in self.layers for n in i.state_names]

    def _reset(self) -> None:
        for p in self.proxies:
            p.calls = 0
            p.state_in = p.state_out = p.lengths = p.frames = None
            p.user_state = p.initial = None

    def run_plain(self, x: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], list[torch.Tensor]]:
        """Call the user's forward with its own initial state; return outputs and final states."""
        self._reset()
        outs = _as_tuple(self.inner(x))
        return outs, [t for p in self.proxies for t in (p.state_out or ())]

    def initial_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The initial state the user's forward starts from (its own hx, or zeros)."""
        if not self.carry_state:
            return []
        self._reset()
        self.inner(x)
        states = []
        for p in self.proxies:
            if p.initial is None:
                raise ExportError(
                    f"layer {p.info.path!r} was not called by model.forward(example); every "
                    "recurrent layer must run once per call. Remove unused layers."
                )
            states.extend(p.initial)
        return states

    def forward(self, x: torch.Tensor, *rest: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``rest`` is ``(lengths, *states)`` when ``takes_lengths`` else ``states``."""
        lengths = rest[0] if self.takes_lengths else None
        states = rest[1:] if self.takes_lengths else rest
        self._reset()
        it = iter(states)
        for p in self.proxies:
            if self.carry_state:
                p.state_in = tuple(next(it) for _ in p.info.state_names)
            p.lengths = lengths
            p.frames = (x.shape[0], x.shape[1])
        outs = _as_tuple(self.inner(x))
        self.n_outputs = len(outs)
        if not self.carry_state:
            return outs
        carried = [t for p in self.proxies for t in (p.state_out or ())]
        return (*outs, *carried)


class BareLayer(nn.Module):
    """A lone nn.RNN/LSTM/GRU given to export: ``forward(x)`` returns its output, batch-first.

    ``x`` is ``(batch, time, features)`` whatever the layer's ``batch_first``.
    """

    def __init__(self, rnn: nn.RNNBase) -> None:
        super().__init__()
        self.rnn = rnn
        self.batch_first = rnn.batch_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.batch_first:
            return self.rnn(x.transpose(0, 1))[0].transpose(0, 1)
        return self.rnn(x)[0]


def as_streamable(model: nn.Module) -> nn.Module:
    """``model``, or a :class:`BareLayer` around it when it is a recurrent layer itself."""
    return BareLayer(model) if isinstance(model, nn.RNNBase) else model


def _as_tuple(out: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    if isinstance(out, torch.Tensor):
        return (out,)
    if isinstance(out, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in out):
        return tuple(out)
    got = type(out).__name__
    if isinstance(out, (tuple, list)):
        got += " of " + ", ".join(type(t).__name__ for t in out)
    raise ExportError(
        f"model.forward must return a tensor or a flat tuple of tensors, got {got}. "
        "Wrap the model so forward returns tensors only (e.g. drop the returned state: "
        "edgeseq carries it)."
    )
