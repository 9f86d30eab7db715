"""The stand-in every streamed module becomes: one protocol for layers, cells and conv caches.

:class:`~edgeseq.exporters._adapter.StreamAdapter` swaps each module a style claims (see
``_styles.py``) for a :class:`StreamProxy` in a deep copy of the user's model. Per call the
adapter hands every proxy its state input, the graph's ``lengths`` and frame count; the
proxy computes its module from that state and keeps the new state for the adapter to
return. A plain call (no state input) starts from the module's own initial state and
records it. The export algorithm never asks which style a proxy is.

Before the first export call the adapter runs the user's forward a few times on probe
sequences (:class:`Probe`) and lets each proxy :meth:`~StreamProxy.settle` the facts that
are fixed for the graph (which axis is time, how much padding the code adds, how often
a cell is stepped); a proxy refuses there, naming its layer, when it cannot stream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

__all__ = ["LayerRunner", "Probe", "StreamProxy", "probe_sequence"]

# A runner computes (y, state_out) for one recurrent layer from (x, state_in, lengths).
LayerRunner = Callable[
    [nn.RNNBase, torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor | None],
    tuple[torch.Tensor, tuple[torch.Tensor, ...]],
]


def probe_sequence(x: torch.Tensor, frames: int, seed: int = 0) -> torch.Tensor:
    """A ``(batch, frames, ...)`` sequence like ``x`` but not periodic (tiling could hide a mean).

    Float examples give normal noise at the example's scale; token examples give the
    example's own ids at random positions, so every id is valid for the model.
    """
    g = torch.Generator().manual_seed(seed)
    shape = (x.shape[0], frames, *x.shape[2:])
    if x.dtype.is_floating_point:
        scale = float(x.std()) if x.numel() > 1 and float(x.std()) > 0 else 1.0
        return torch.randn(shape, generator=g, dtype=x.dtype) * scale + float(x.mean())
    flat = x.reshape(-1)
    idx = torch.randint(0, flat.numel(), shape, generator=g)
    return flat[idx]


@dataclass
class Probe:
    """What one proxy saw during one plain probe run of ``frames`` frames."""

    frames: int
    batch: int
    inputs: list[Any] = field(default_factory=list)  # per call: what settle() needs
    outputs: list[Any] = field(default_factory=list)


class StreamProxy(nn.Module):
    """Stands in for one module; its state flows through ``state_in``/``state_out``.

    Subclasses declare ``style`` (a key of :data:`~edgeseq.exporters.STYLES`) and
    ``state_names``; ``batch_axis`` is the batch axis of every state tensor. ``carry``
    is False when the module keeps no state (e.g. a kernel-1 convolution) or when the
    model's own ``forward(x, state)`` carries it.
    """

    style: ClassVar[str] = ""
    batch_axis: ClassVar[int] = 1

    def __init__(self, module: nn.Module, path: str, runner: LayerRunner) -> None:
        super().__init__()
        self.module = module
        self.path = path
        self.runner = runner
        self.carry = True
        self.probe: Probe | None = None  # set by the adapter during probe runs
        self.reset()

    def __getattr__(self, name: str) -> Any:
        """User code reads the module's attributes (hidden_size, kernel_size...): delegate."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            modules = self.__dict__.get("_modules", {})
            if "module" not in modules:
                raise
            return getattr(modules["module"], name)

    @property
    def state_names(self) -> tuple[str, ...]:
        """Names of the state tensors this module carries, e.g. ``("h", "c")``."""
        return ()

    @property
    def carries(self) -> bool:
        """Whether this proxy's state is a pair of the graph's contract."""
        return self.carry and bool(self.state_names)

    def reset(self) -> None:
        """Forget everything of the last call (the adapter calls it before each)."""
        self.calls = 0
        self.state_in: tuple[torch.Tensor, ...] | None = None
        self.state_out: tuple[torch.Tensor, ...] | None = None
        self.lengths: torch.Tensor | None = None  # (batch,) valid frames, when masking
        self.frames: tuple[int, int] | None = None  # the graph input's (batch, time)
        self.user_state: tuple[torch.Tensor, ...] | None = None
        self.initial: tuple[torch.Tensor, ...] | None = None  # what a plain call started from

    def settle(self, probes: list[Probe]) -> None:
        """Fix what the probe runs showed (static for the graph), or raise ExportError."""

    def how(self, mode: str) -> str:
        """One line for ``explain``: how this module is streamed in ``mode``."""
        return self.style

    def facts(self) -> dict[str, Any]:
        """What the contract's ``model.extra["streamed"]`` records about this module."""
        carried = list(self.state_names) if self.carries else []
        return {"path": self.path, "style": self.style, "carried": carried}

    def needs_lengths(self) -> bool:
        """Whether the graph must take ``lengths`` for this module (e.g. a conv cache)."""
        return False

    def one_step(self) -> bool:
        """Whether this module runs once per frame, so a native graph is one step."""
        return False
