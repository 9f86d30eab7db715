"""Export modes as small declarative records in one explicit registry.

A mode says how each recurrent layer is computed inside the exported graph (its
runner), whether the graph takes a ``lengths`` input (and whether it does by default),
whether its time axis is a fixed chunk, and which op types its graph must and must not
contain (checked after every export and by ``edgeseq verify``). Native graphs leave
``lengths`` out unless asked (wired to ``sequence_lens`` it runs right on onnxruntime
only); unrolled graphs keep it (a mask in basic ops) and get a one-step graph beside them.

========  =====================================  ===============  ======================
mode      recurrent layers become                frames per call  graph must not contain
========  =====================================  ===============  ======================
native    ONNX LSTM / GRU / RNN nodes            any              Loop, Scan
unrolled  MatMul/Gemm, Add, Mul, Sigmoid, Tanh…  fixed ``chunk``  LSTM, GRU, RNN, Loop…
========  =====================================  ===============  ======================
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
    fixed_chunk: bool = False  # the graph's time axis is a fixed number of frames
    default_chunk: int | None = None  # frames per call when the caller gives no chunk
    # export(lengths=None) gives a lengths input iff this is set: native graphs leave it out
    # (tract refuses a fed sequence_lens, OpenVINO's final state ignores it), unrolled
    # graphs keep it (a mask in basic ops that every runtime runs; it pads fixed chunks)
    default_lengths: bool = True


MODES: dict[str, ModeSpec] = {}


def register_mode(spec: ModeSpec, *, overwrite: bool = False) -> ModeSpec:
    """Add ``spec`` to :data:`MODES`; refuse to replace an existing mode silently."""
    if spec.name in MODES and not overwrite:
        raise ExportError(
            f"export mode {spec.name!r} is already registered; pass overwrite=True to replace it"
        )
    if spec.fixed_chunk and not spec.takes_lengths:
        raise ExportError(
            f"mode {spec.name!r} has a fixed chunk, so it must take a lengths input "
            "(takes_lengths=True) for the predictor to pad and mask shorter calls"
        )
    MODES[spec.name] = spec
    return spec


def get_mode(name: str) -> ModeSpec:
    """Look up a mode by name; the error lists the registered modes."""
    try:
        return MODES[name]
    except (KeyError, TypeError):
        raise ExportError(
            f"unknown export mode {name!r}; registered modes: {sorted(MODES)}"
        ) from None


def _runners() -> tuple[Callable, Callable]:
    from edgeseq.exporters._adapter import NativeRunner
    from edgeseq.exporters._cells import UnrolledRunner

    return NativeRunner, UnrolledRunner


_native, _unrolled = _runners()

register_mode(
    ModeSpec(
        name="native",
        runner=_native,
        takes_lengths=False,
        wire_native_lengths=True,
        # int8 quantization turns LSTM into onnxruntime's DynamicQuantizeLSTM
        required_ops=frozenset({"LSTM", "GRU", "RNN", "DynamicQuantizeLSTM"}),
        forbidden_ops=frozenset({"Loop", "Scan"}),
        description="ONNX LSTM/GRU/RNN ops; any number of frames per call",
        default_lengths=False,
    )
)

register_mode(
    ModeSpec(
        name="unrolled",
        runner=_unrolled,
        takes_lengths=True,
        wire_native_lengths=False,
        forbidden_ops=frozenset({"LSTM", "GRU", "RNN", "Scan", "Loop", "DynamicQuantizeLSTM"}),
        description="cells in basic ops (MatMul, Add, Mul, Sigmoid, Tanh); fixed chunk, "
        "shorter calls padded and masked by lengths",
        fixed_chunk=True,
        default_chunk=16,
    )
)
