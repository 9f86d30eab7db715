"""``config.pbtxt`` from a contract: inputs, outputs, sequence batching, implicit state.

The text is rendered from plain data by :func:`render` (protobuf text format), with a
comment heading each model; :mod:`._check` parses it back with Triton's own schema.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from edgeseq.contract import Contract, TensorSpec
from edgeseq.exporters.triton._variant import CONTROLS, Strategy, init_input_name

__all__ = [
    "TRITON_DTYPES",
    "Backend",
    "Enum",
    "TritonOptions",
    "config_text",
    "per_request",
    "render",
    "triton_dims",
]

Backend = Literal["onnxruntime", "python"]
TRITON_DTYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "float64": "TYPE_FP64",
    "int64": "TYPE_INT64",
    "int32": "TYPE_INT32",
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8",
    "int8": "TYPE_INT8",
}
PARAM_PREFIX = "edgeseq."  # config parameters the generated model.py reads


@dataclass(frozen=True)
class TritonOptions:
    """How the generated repository batches and keeps sequences.

    ``max_batch`` requests (one per sequence) share a model call; ``strategy`` is the
    sequence batcher's: ``oldest`` forms dynamic batches from the ready sequences,
    ``direct`` gives each sequence a batch slot. ``max_sequences`` sequences are in flight
    per model instance (the rest wait in Triton's backlog); a sequence idle for
    ``max_idle_us`` microseconds is dropped by Triton (and its state released).
    ``queue_delay_us`` lets Triton hold a request that long to batch it with others;
    ``threads`` sets onnxruntime's intra-op threads in a python-backend ``model.py``.
    """

    max_batch: int = 32
    strategy: Strategy = "oldest"
    max_idle_us: int = 60_000_000
    max_sequences: int = 256
    queue_delay_us: int = 0
    threads: int | None = None


class Enum(str):
    """A protobuf enum value: rendered bare, not quoted."""


def _scalar(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def render(fields: Sequence[tuple[str, Any]], indent: int = 0) -> str:
    """Protobuf text format: ``(name, value)`` pairs; a value that is a list of pairs is a
    message, a list of such lists a repeated message, a list of scalars a repeated scalar."""
    pad = "  " * indent
    lines = []
    for name, value in fields:
        if _is_message(value):
            lines.append(f"{pad}{name} {{\n{render(value, indent + 1)}{pad}}}")
        elif isinstance(value, list) and value and all(_is_message(v) for v in value):
            items = [f"{pad}  {{\n{render(v, indent + 2)}{pad}  }}" for v in value]
            lines.append(f"{pad}{name} [\n" + ",\n".join(items) + f"\n{pad}]")
        elif isinstance(value, list):
            lines.append(f"{pad}{name}: [ {', '.join(_scalar(v) for v in value)} ]")
        else:
            lines.append(f"{pad}{name}: {_scalar(value)}")
    return "".join(line + "\n" for line in lines)


def _is_message(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str) for v in value)
    )


def triton_dims(shape: Sequence[int | str], batched: bool = True) -> list[int]:
    """Config dims: the batch axis (first) left out when batching, symbolic axes as -1."""
    dims = list(shape[1:]) if batched else list(shape)
    return [d if isinstance(d, int) else -1 for d in dims]


def per_request(spec: TensorSpec) -> TensorSpec:
    """``spec`` as a python-backend request carries it: batch first, any number of frames.

    A StreamPool takes one stream's frames ``[T, ...]`` whatever the graph's layout
    (time-major, a fixed chunk) and returns ``[T, ...]`` (or one value per call): the
    request adds a batch dim of 1 in front.
    """
    dims = [
        "time" if i == spec.time_axis else d
        for i, d in enumerate(spec.shape)
        if i != spec.batch_axis
    ]
    t, b = spec.time_axis, spec.batch_axis
    time = None if t is None else 1 + t - (1 if b is not None and b < t else 0)
    return dataclasses.replace(spec, shape=["batch", *dims], batch_axis=0, time_axis=time)


def _tensor(spec: TensorSpec, optional: bool = False) -> list[tuple[str, Any]]:
    fields: list[tuple[str, Any]] = [
        ("name", spec.name),
        ("data_type", Enum(TRITON_DTYPES[spec.dtype])),
        ("dims", triton_dims(spec.shape)),
    ]
    if optional:
        fields.append(("optional", True))
    return fields


def _control(name: str, kind: str) -> list[tuple[str, Any]]:
    return [("name", name), ("control", [[("kind", Enum(kind)), ("int32_false_true", [0, 1])]])]


def _sequence_batching(c: Contract, opts: TritonOptions, controls: dict[str, str], states: bool):
    fields: list[tuple[str, Any]] = [("max_sequence_idle_microseconds", opts.max_idle_us)]
    if opts.strategy == "direct":
        fields.append(("direct", [("max_queue_delay_microseconds", opts.queue_delay_us)]))
    else:
        oldest = [
            ("max_candidate_sequences", opts.max_sequences),
            ("max_queue_delay_microseconds", opts.queue_delay_us),
        ]
        fields.append(("oldest", oldest))
    fields.append(("control_input", [_control(n, k) for n, k in controls.items()]))
    if states:
        fields.append(("state", [_state(s) for s in c.states]))
    return fields


def _state(s) -> list[tuple[str, Any]]:
    dtype = Enum(TRITON_DTYPES[s.dtype])
    dims = triton_dims(s.shape)
    # zeros on START; the graph itself replaces them with the contract's initial value
    initial = [("data_type", dtype), ("dims", dims), ("zero_data", True), ("name", "zeros")]
    return [
        ("input_name", s.input),
        ("output_name", s.output),
        ("data_type", dtype),
        ("dims", dims),
        ("initial_state", initial),
    ]


def config_text(
    name: str, c: Contract, backend: Backend, opts: TritonOptions, *, seeded: bool = False
) -> str:
    """The ``config.pbtxt`` of model ``name``.

    For the ``onnxruntime`` backend and for stateless models ``c`` is the rewritten graph's
    contract (batch-first state, control inputs); for a stateful ``python`` model it is the
    model's own contract, stepped by a StreamPool in ``model.py``. ``seeded``: a
    conditioned decoder, whose first state comes in ``init.<state>`` inputs on START.
    """
    stateful = c.model.stateful and bool(c.states)
    implicit = backend == "onnxruntime" or not stateful  # the rewritten graph, as it is
    given = {i.name for i in c.inputs}
    if implicit:
        hidden = set(CONTROLS) | set(c.state_inputs)
        inputs = [_tensor(i) for i in c.inputs if i.name not in hidden]
        controls = {n: kind for n, (kind, _) in CONTROLS.items() if n in given}
    else:
        inputs = [_tensor(per_request(c.frames))]
        for s in c.states if seeded else []:
            bf = [s.shape[s.batch_axis], *(d for i, d in enumerate(s.shape) if i != s.batch_axis)]
            inputs.append(_tensor(TensorSpec(init_input_name(s.input), bf, s.dtype), True))
        controls = {"START": "CONTROL_SEQUENCE_START", "END": "CONTROL_SEQUENCE_END"}
        if opts.strategy == "direct":
            controls["READY"] = "CONTROL_SEQUENCE_READY"
    fields: list[tuple[str, Any]] = [
        ("name", name),
        ("backend", backend),
        ("max_batch_size", opts.max_batch),
        ("input", inputs),
        ("output", [_tensor(o if implicit else per_request(o)) for o in c.data_outputs()]),
    ]
    if stateful:
        fields.append(("sequence_batching", _sequence_batching(c, opts, controls, implicit)))
    else:
        fields.append(("dynamic_batching", [("max_queue_delay_microseconds", opts.queue_delay_us)]))
    if backend == "python":
        fields.append(("instance_group", [[("kind", Enum("KIND_CPU")), ("count", 1)]]))
        params = {
            "stateful": "1" if stateful else "0",
            # Triton drops a sequence idle for max_idle_us without telling the model; the
            # pool evicts it later (never before Triton: a request Triton still accepts
            # must find its stream), with room for the dropped-but-not-evicted overlap
            "max_streams": str(2 * opts.max_sequences),
            "idle_timeout_s": repr(2 * opts.max_idle_us / 1e6),
        }
        if opts.threads:
            params["threads"] = str(opts.threads)
        fields.append(("parameters", [_param(k, v) for k, v in params.items()]))
    return _header(name, c, backend, opts, stateful) + render(fields)


def _param(key: str, value: str) -> list[tuple[str, Any]]:
    return [("key", PARAM_PREFIX + key), ("value", [("string_value", value)])]


def _header(name: str, c: Contract, backend: Backend, opts: TritonOptions, stateful: bool) -> str:
    m = c.model
    lines = [
        f"# {name}: generated by edgeseq from the model's state contract "
        f"({m.cell}, {m.topology}, {m.mode}).",
        "# After editing, check it: edgeseq triton --check REPOSITORY",
    ]
    if stateful and backend == "onnxruntime":
        ready = ", READY=0 rows keep theirs" if opts.strategy == "direct" else ""
        lines.append(
            "# Triton keeps each sequence's state (batch-first); START rows start from the "
            f"contract's initial state{ready}."
        )
    elif stateful:
        lines.append(
            "# model.py steps an edgeseq StreamPool keyed by correlation id: START opens a "
            "stream, END closes it."
        )
    return "".join(f"{line}\n" for line in lines)
