"""The state contract: what a streaming ONNX model takes, returns and carries.

Exporters write a :class:`Contract` as versioned JSON into the ONNX file's
``metadata_props`` under :data:`METADATA_KEY`; the runtime reads it back through
onnxruntime's ``custom_metadata_map`` and checks it against the graph before the
first call. This module is the single owner of that description and its front door
(reading the JSON and checking against the graph are done by its private helpers
``_contract_json`` and ``_contract_graph``). It imports neither torch nor onnx, so a
device can use it with numpy and onnxruntime only.

A streaming graph looks like this (names are free, the contract says which is which)::

    inputs:  x        (batch, time, features)  float32, or (batch, time) int64 tokens
             lengths  (batch,)                 int32, optional: valid frames per row
             state_in.<layer path>.h   e.g. (layers, batch, hidden)
    outputs: y        (batch, time, out)
             state_out.<layer path>.h  same shape as its input
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from edgeseq._contract_graph import check_graph
from edgeseq._contract_json import (
    contract_from_dict,
    state_pair_from_dict,
    tensor_from_dict,
)
from edgeseq._contract_json import fail as _fail
from edgeseq._contract_rules import state_views
from edgeseq.errors import ContractError

__all__ = [
    "CONTRACT_VERSION",
    "METADATA_KEY",
    "Contract",
    "GraphIO",
    "ModelFacts",
    "Preprocessing",
    "StatePair",
    "StateView",
    "TensorSpec",
    "json_schema",
    "onnx_type_to_dtype",
]

METADATA_KEY = "edgeseq.contract"
CONTRACT_VERSION = 1  # change edgeseq/contract.schema.json with it (and with any new field)

Dim = int | str  # a fixed size, or a symbolic axis name such as "batch"
Cell = Literal["rnn", "lstm", "gru", "mixed", "unknown"]
Topology = Literal["one_to_one", "one_to_many", "many_to_one", "many_to_many", "seq2seq", "custom"]
Mode = Literal["native", "unrolled", "external"]

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(bool)": "bool",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
}


def json_schema() -> dict[str, Any]:
    """The contract's JSON Schema (``edgeseq/contract.schema.json``, shipped with the
    package), for reading or validating contracts from any language."""
    from importlib.resources import files

    return json.loads(files("edgeseq").joinpath("contract.schema.json").read_text("utf-8"))


def onnx_type_to_dtype(ort_type: str) -> str:
    """Map an onnxruntime type string such as ``"tensor(float)"`` to a numpy dtype name."""
    try:
        return _ORT_TYPES[ort_type]
    except KeyError:
        raise ContractError(
            f"unsupported tensor type {ort_type!r}; edgeseq handles {sorted(_ORT_TYPES)}"
        ) from None


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, shape with symbolic axes, dtype, batch/time axes."""

    name: str
    shape: list[Dim]
    dtype: str = "float32"
    batch_axis: int | None = 0
    time_axis: int | None = 1

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], path: str) -> TensorSpec:
        return tensor_from_dict(cls, d, path)


@dataclass(frozen=True)
class StatePair:
    """A recurrent state carried from one call to the next: fed as ``input``, read as ``output``.

    ``init`` is ``"zeros"`` or a flat list of numbers that fills ``shape`` with batch 1
    (it is repeated along ``batch_axis`` for larger batches). ``batch_axis`` is None for the
    state of a model that runs one stream per call (no batch axis, e.g. ``(1, 1, hidden)``).

    ``part_of`` names the state a user sees when the graph carries it in parts, as the
    recurrent op wants it: a 2-layer LSTM's ``h`` ``(2, batch, hidden)`` travels as two
    pairs ``(1, batch, hidden)``, each with ``part_of="state_in.<path>.h"``. The pairs
    naming one state stack along axis 0 in contract order (:meth:`Contract.state_views`).
    """

    input: str
    output: str
    shape: list[Dim]
    batch_axis: int | None = 1
    dtype: str = "float32"
    init: str | list[float] = "zeros"
    part_of: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], path: str) -> StatePair:
        return state_pair_from_dict(cls, d, path)


@dataclass(frozen=True)
class StateView:
    """A state as users see it (``StreamingPredictor.state``, ``set_state``): one pair, or
    the parts of a state stacked on axis 0. ``pairs`` index :attr:`Contract.states`."""

    name: str  # the pair's input name, or the parts' ``part_of``
    output: str  # the pair's output name, or the parts' output without their ``.l<k>``
    pairs: tuple[int, ...]
    shape: list[Dim]
    batch_axis: int | None = 1
    dtype: str = "float32"


@dataclass(frozen=True)
class ModelFacts:
    """What the model is: cell, size, topology and how it was exported."""

    cell: str = "unknown"
    layers: int | None = None
    hidden_size: int | None = None
    input_size: int | None = None
    output_size: int | None = None
    topology: str = "many_to_many"
    mode: str = "native"
    chunk: int | None = None  # fixed frames per call of an unrolled graph
    stateful: bool = True  # False: offline, every call is a whole sequence
    task: str | None = None  # forecast, classify, generate, ...
    labels: list[str] | None = None  # class names for classifiers
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Preprocessing:
    """How raw frames become model inputs and outputs become values.

    The runtime applies ``(x - mean) / std`` to float frames and ``y * out_std + out_mean``
    to the first output when these are set. ``vocab`` maps token ids to text pieces.
    """

    mean: list[float] | None = None
    std: list[float] | None = None
    out_mean: list[float] | None = None
    out_std: list[float] | None = None
    vocab: list[str] | None = None


@dataclass(frozen=True)
class GraphIO:
    """An input or output as onnxruntime reports it: name, shape (None for unknown), dtype."""

    name: str
    shape: list[int | str | None]
    dtype: str


@dataclass(frozen=True)
class Contract:
    """The full description of a streaming model. See the module docstring."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    states: list[StatePair] = field(default_factory=list)
    lengths: str | None = None  # name of the (batch,) int32 valid-frames input
    constants: list[str] = field(default_factory=list)  # inputs fed unchanged on every call
    # state inputs holding per-stream memory (e.g. an encoder's outputs for attention): set
    # when a stream starts, passed through unchanged by the graph, so carried like state
    memory: list[str] = field(default_factory=list)
    model: ModelFacts = field(default_factory=ModelFacts)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    producer: dict[str, str] = field(default_factory=dict)
    version: int = CONTRACT_VERSION

    # ---------------------------------------------------------------- serialise
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not d["memory"]:  # left out when unused: older contracts keep their JSON and hash
            del d["memory"]
        for pair in d["states"]:  # written only when set: older contracts keep their hash
            if pair["part_of"] is None:
                del pair["part_of"]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def hash(self) -> str:
        """A short stable digest: snapshots carry it to prove which model they belong to."""
        import hashlib  # lazily: OpenSSL's bindings cost a device ~4 MB of memory

        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @classmethod
    def from_json(cls, text: str) -> Contract:
        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError, RecursionError) as exc:  # 1e5 deep nesting
            raise ContractError(
                f"the model's {METADATA_KEY!r} metadata is not valid JSON ({exc}). "
                "The file was edited or truncated: re-export it."
            ) from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> Contract:
        return contract_from_dict(cls, data)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], source: str = "model") -> Contract:
        """Read the contract from an ONNX file's metadata (onnxruntime's custom_metadata_map)."""
        if METADATA_KEY not in metadata:
            raise ContractError(
                f"{source} has no {METADATA_KEY!r} metadata, so edgeseq does not know which "
                "inputs carry state. Export it with edgeseq, run `edgeseq inspect MODEL "
                "--write-contract OUT.onnx` to discover and store one, or name the pairs: "
                "StreamingPredictor(model, state={'h_in': 'h_out'})."
            )
        return cls.from_json(metadata[METADATA_KEY])

    # ---------------------------------------------------------------- queries
    @property
    def features(self) -> list[str] | None:
        """The frame's feature names in input order (``model.extra["features"]``, recorded
        by ``edgeseq train`` from a CSV header), or None for a model exported without them."""
        extra = self.model.extra if isinstance(self.model.extra, Mapping) else {}
        names = extra.get("features")
        if names is not None and not (
            isinstance(names, list) and names and all(isinstance(n, str) and n for n in names)
        ):
            raise _fail("model.extra.features", "a non-empty list of column names or null", names)
        return names

    @property
    def frames(self) -> TensorSpec:
        """The per-frame data input (the first input that is not state, lengths or constant)."""
        return self.inputs[0]

    @property
    def state_inputs(self) -> list[str]:
        return [s.input for s in self.states]

    @property
    def state_outputs(self) -> list[str]:
        return [s.output for s in self.states]

    def data_outputs(self) -> list[TensorSpec]:
        """Outputs that are not state: what a call returns to the user."""
        carried = set(self.state_outputs)
        return [o for o in self.outputs if o.name not in carried]

    def state_views(self) -> list[StateView]:
        """The states as a user sees them, in contract order: one per pair, except that the
        parts of a state (pairs with the same ``part_of``) make one view, stacked on axis 0.

        Raises :class:`ContractError` when parts cannot stack (see :class:`StatePair`).
        """
        return state_views(self.states)

    # ---------------------------------------------------------------- checks
    def check_graph(
        self, graph_inputs: Iterable[GraphIO], graph_outputs: Iterable[GraphIO]
    ) -> None:
        """Refuse a contract that disagrees with the graph, naming the field that is wrong."""
        check_graph(self, graph_inputs, graph_outputs)
