"""Export modes as small declarative records in one explicit registry.

A mode says how each recurrent layer is computed inside the exported graph (its
runner), whether the graph takes a ``lengths`` input, and which op types its graph
must and must not contain (checked after every export and by ``edgeseq verify``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from edgeseq.errors import ExportError

__all__ = ["MODES", "ModeSpec", "get_mode", "register_mode"]


@dataclass(frozen=True)
class ModeSpec:
    """How one export mode builds and checks its graph."""

    name: str
    runner: Callable  # LayerRunner: computes one recurrent layer in the graph
    takes_lengths: bool  # the adapter masks frames itself through a lengths input
    wire_native_lengths: bool  # lengths wired into LSTM/GRU/RNN sequence_lens after export
    required_ops: frozenset[str] = field(default_factory=frozenset)  # at least one present
    forbidden_ops: frozenset[str] = field(default_factory=frozenset)
    description: str = ""


MODES: dict[str, ModeSpec] = {}


def register_mode(spec: ModeSpec, *, overwrite: bool = False) -> ModeSpec:
    """Add ``spec`` to :data:`MODES`; refuse to replace an existing mode silently."""
    if spec.name in MODES and not overwrite:
        raise ExportError(
            f"export mode {spec.name!r} is already registered; pass overwrite=True to replace it"
        )
    MODES[spec.name] = spec
    return spec


def get_mode(name: str) -> ModeSpec:
    """Look up a mode by name; the error lists the registered modes."""
    try:
        return MODES[name]
    except KeyError:
        raise ExportError(
            f"unknown export mode {name!r}; registered modes: {sorted(MODES)}"
        ) from None


def _native_runner() -> Callable:
    from edgeseq.exporters._adapter import NativeRunner

    return NativeRunner


register_mode(
    ModeSpec(
        name="native",
        runner=_native_runner(),
        takes_lengths=False,
        wire_native_lengths=True,
        required_ops=frozenset({"LSTM", "GRU", "RNN"}),
        forbidden_ops=frozenset({"Loop", "Scan"}),
        description="ONNX LSTM/GRU/RNN ops; any number of frames per call",
    )
)
