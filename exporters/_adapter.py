"""Make any streamable module streamable without touching its code.

Every module a registered style claims (nn.RNN/LSTM/GRU layers, RNN cells stepped in a
loop, convolutions over time; see ``_styles.py``) is swapped, in a deep copy, for a
:class:`~edgeseq.exporters._proxy.StreamProxy` that takes its state from the adapter's
inputs and hands its new state back as outputs. A ``forward(x, state=None) -> (y, state)``
signature is streamed as it is (``_explicit.py``). The user's ``forward`` runs unchanged.

How a recurrent layer runs (native op, unrolled cell) is a :data:`LayerRunner`, so the
export algorithm is written once for every mode.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from edgeseq.errors import ExportError
from edgeseq.exporters._explicit import ExplicitState, find_explicit_state
from edgeseq.exporters._proxy import LayerRunner, Probe, StreamProxy, probe_sequence
from edgeseq.exporters._recurrent import (
    LayerInfo,
    NativeRunner,
    RecurrentProxy,
    find_recurrent_layers,
)
from edgeseq.exporters._styles import proxy_for

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


class StreamAdapter(nn.Module):
    """``forward(x, [lengths,] *state_in) -> (*outputs, *state_out)`` around a user module.

    ``x`` is ``(batch, time, ...)``; ``lengths`` ``(batch,)`` int32 valid frames, an input
    when the mode masks padded frames or a module needs it (a conv cache); native nodes get
    it wired after export. States come in :meth:`state_keys` order: the explicit state's
    tensors, then each proxy's (recurrent layers ``(layers*dirs, batch, hidden)``, cells
    ``(1, batch, hidden)``, conv caches ``(batch, channels, frames)``). Call
    :meth:`prepare` with an example before anything else (plain calls do it themselves).
    """

    def __init__(
        self,
        model: nn.Module,
        runner: LayerRunner = NativeRunner,
        takes_lengths: bool = False,
        carry_state: bool = True,
        memory: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.takes_lengths = takes_lengths
        self.carry_state = carry_state  # False: offline, each call starts from the initial state
        # keyword arguments of the model's forward fed per stream; returned unchanged so a
        # stream carries them like state
        self.memory = tuple(memory)
        self.inner = copy.deepcopy(model).eval()
        self.layers = find_recurrent_layers(self.inner)
        self.proxies: list[StreamProxy] = []
        claimed: list[str] = []
        for path, mod in list(self.inner.named_modules()):
            kind = proxy_for(mod)
            if kind is None or not path or any(path.startswith(c + ".") for c in claimed):
                continue
            parent_path, _, attr = path.rpartition(".")
            parent = self.inner.get_submodule(parent_path) if parent_path else self.inner
            proxy = kind(mod, path, runner)
            setattr(parent, attr, proxy)
            self.proxies.append(proxy)
            claimed.append(path)
        self.memory_values: list[torch.Tensor] = []
        self.explicit: ExplicitState | None = None
        self.refusals: list[tuple[str, str]] = []  # (path, why) found while preparing
        self.prepared = False
        self.n_outputs: int | None = None
        self.eval()  # torch.onnx.export restores this mode after tracing: keep it eval

    # ---- what is carried
    def carried(self) -> list[StreamProxy]:
        """The proxies whose state is a contract pair, in input order."""
        return [p for p in self.proxies if p.carries] if self.carry_state else []

    def state_keys(self) -> list[tuple[str, str]]:
        """(path, state name) for every carried tensor, in input order."""
        if not self.carry_state:
            return []
        keys = self.explicit.state_keys() if self.explicit else []
        return keys + [(p.path, n) for p in self.carried() for n in p.state_names]

    def state_axes(self) -> list[int]:
        """The batch axis of every carried tensor, in :meth:`state_keys` order."""
        if not self.carry_state:
            return []
        axes = list(self.explicit.batch_axes) if self.explicit else []
        return axes + [p.batch_axis for p in self.carried() for _ in p.state_names]

    def streamed(self) -> list[dict[str, Any]]:
        """How each streamed module and the explicit state stream (the contract records it)."""
        out = [p.facts() for p in self.proxies]
        if self.explicit is not None:
            e = self.explicit
            out.append({"path": e.param, "style": "explicit_state", "carried": e.names})
        return out

    def needs_lengths(self) -> bool:
        """Whether the graph must take ``lengths`` whatever the mode (e.g. a conv cache)."""
        return any(p.needs_lengths() for p in self.carried())

    def one_step(self) -> bool:
        """Whether a module runs once per frame (a cell loop): a native graph is one step."""
        return any(p.one_step() for p in self.proxies)

    # ---- probing: fix what is static for the graph, or refuse
    def prepare(self, x: torch.Tensor, *, collect: bool = False) -> None:
        """Run the user's forward on probe sequences like ``x`` and settle every proxy.

        Raises :class:`ExportError` for the first module that cannot stream (with
        ``collect``, or offline, keeps them in :attr:`refusals` instead) or when forward
        fails.
        """
        if self.prepared:
            return
        batch, frames = max(2, x.shape[0]), max(4, x.shape[1])
        x = torch.cat([x] * batch, dim=0)[:batch] if x.shape[0] < batch else x
        try:
            self.explicit = (
                None
                if self._memory_second()
                else find_explicit_state(
                    self.inner,
                    self._call,
                    probe_sequence(x, frames, seed=10),
                    lambda: [p.user_state for p in self.proxies],
                    lambda: [p.initial for p in self.proxies],
                )
            )
            if self.explicit is not None:
                for p, fed in zip(self.proxies, self.explicit.fed):
                    p.carry = p.carry and not fed
            runs = [(frames, 11), (frames, 12), (frames + 3, 13)]
            probes: list[list[Probe]] = [[] for _ in self.proxies]
            for t, seed in runs:
                seq = probe_sequence(x, t, seed=seed)
                for p, rec in zip(self.proxies, probes):
                    p.probe = Probe(t, batch)
                    rec.append(p.probe)
                try:
                    self._call(seq)
                finally:
                    for p in self.proxies:
                        p.probe = None
        except ExportError:
            raise
        except Exception as exc:
            raise ExportError(
                f"model.forward(example) failed for an example of shape {tuple(x.shape)} "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). Pass "
                "an example shaped (batch, time, features) as the model's forward expects."
            ) from exc
        for p, rec in zip(self.proxies, probes):
            p.settle(rec)
            why = getattr(p, "refusal", None)
            if why:
                self.refusals.append((p.path, why))
        if self.refusals and not collect and self.carry_state:
            raise ExportError(self.refusals[0][1])
        self.prepared = True

    def _memory_second(self) -> bool:
        """Whether forward's second positional argument is a memory (not a state)."""
        try:
            params = list(inspect.signature(self.inner.forward).parameters)
        except (TypeError, ValueError):
            return False
        return len(params) > 1 and params[1] in self.memory

    def _call(self, x: torch.Tensor, *args: Any) -> Any:
        self.reset_proxies()
        return self.inner(x, *args, **self._memory_kwargs(x.shape[0]))

    def reset_proxies(self) -> None:
        """Put every proxy back to a plain call: no state input, nothing recorded."""
        for p in self.proxies:
            p.reset()

    def _split(self, out: Any) -> tuple[tuple[torch.Tensor, ...], list[torch.Tensor]]:
        """(outputs, explicit state leaves) of one forward's return value."""
        if self.explicit is None:
            return _as_tuple(out), []
        y, leaves = self.explicit.split(out)
        return _as_tuple(y), leaves

    # ---- memory: per-stream keyword arguments of forward, passed through unchanged
    def set_memory(self, memory: Sequence[torch.Tensor]) -> None:
        """The memory plain calls and probes use (rows cycled to each call's batch)."""
        if len(memory) != len(self.memory):
            raise ExportError(
                f"the model takes memory {list(self.memory)}: expected {len(self.memory)} "
                f"tensors, got {len(memory)}"
            )
        self.memory_values = [m.detach() for m in memory]

    def _memory_kwargs(self, batch: int) -> dict[str, torch.Tensor]:
        if not self.memory:
            return {}
        if len(self.memory_values) != len(self.memory):
            raise ExportError(
                f"the model takes memory {list(self.memory)}: give examples first (set_memory)"
            )
        rows = [m[torch.arange(batch) % m.shape[0]] for m in self.memory_values]
        return dict(zip(self.memory, rows))

    # ---- eager calls
    def run_plain(
        self, x: torch.Tensor, memory: Sequence[torch.Tensor] = ()
    ) -> tuple[tuple[torch.Tensor, ...], list[torch.Tensor]]:
        """Call the user's forward with its own initial state; return outputs and final states
        (then the memory, if any, unchanged). ``memory`` replaces the one set before."""
        if memory:
            self.set_memory(memory)
        self.prepare(x)
        outs, leaves = self._split(self._call(x))
        mem = list(self._memory_kwargs(x.shape[0]).values()) if self.carry_state else []
        return outs, leaves + [t for p in self.carried() for t in (p.state_out or ())] + mem

    def initial_states(
        self, x: torch.Tensor, memory: Sequence[torch.Tensor] = ()
    ) -> list[torch.Tensor]:
        """The initial state the user's forward starts from (its own, or zeros), in order
        (the memory is not among them)."""
        if memory:
            self.set_memory(memory)
        self.prepare(x)
        if not self.carry_state:
            return []
        self._call(x)
        states = self.explicit.initial(x.shape[0]) if self.explicit else []
        for p in self.proxies:
            if p.initial is None and isinstance(p, RecurrentProxy):
                raise ExportError(
                    f"layer {p.path!r} was not called by model.forward(example); every "
                    "recurrent layer must run once per call. Remove unused layers."
                )
            if p.carries:
                states.extend(p.initial or ())
        return states

    def forward(self, x: torch.Tensor, *rest: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``rest`` is ``(lengths, *states, *memory)`` when ``takes_lengths`` else
        ``(*states, *memory)``; returns ``(*outputs, *states, *memory)``."""
        lengths = rest[0] if self.takes_lengths else None
        states = list(rest[1:] if self.takes_lengths else rest)
        n_mem = len(self.memory)
        memory = states[len(states) - n_mem :] if n_mem else []
        states = states[: len(states) - n_mem]
        self.reset_proxies()
        n_explicit = len(self.explicit.names) if self.explicit and self.carry_state else 0
        own = iter(states[n_explicit:])
        carried = self.carried()
        for p in self.proxies:
            if p in carried:
                p.state_in = tuple(next(own) for _ in p.state_names)
            p.lengths = lengths
            p.frames = (x.shape[0], x.shape[1])
        args = self.explicit.args(states[:n_explicit]) if n_explicit else []  # type: ignore[union-attr]
        kwargs = dict(zip(self.memory, memory))
        outs, leaves = self._split(self.inner(x, *args, **kwargs))  # type: ignore[union-attr]
        self.n_outputs = len(outs)
        if not self.carry_state:
            return outs
        carried_out = [t for p in carried for t in (p.state_out or ())]
        # memory goes back out as it came in (an Identity node), so it rides with the state
        return (*outs, *leaves, *carried_out, *(m.clone() for m in memory))


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


def _as_tuple(out: Any) -> tuple[torch.Tensor, ...]:
    if isinstance(out, torch.Tensor):
        return (out,)
    if isinstance(out, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in out):
        return tuple(out)
    got = type(out).__name__
    if isinstance(out, (tuple, list)):
        got += " of " + ", ".join(type(t).__name__ for t in out)
    raise ExportError(
        f"model.forward must return a tensor or a flat tuple of tensors, got {got}. "
        "Return the state only with a state argument, forward(x, state=None) -> (y, state), "
        "or return tensors only (edgeseq carries the recurrent layers' state)."
    )
