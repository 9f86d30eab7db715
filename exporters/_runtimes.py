"""The ONNX runtimes a device may have, each driven through its own API for verification.

:func:`open_runtime` returns a :class:`Runner` whose ``run(names, feed)`` does one call
with numpy in and out, the way a device program drives that runtime (state is fed and
read back explicitly by the caller, so it is carried through the runtime's own calls):

===========  ===============================================  ===============================
runtime      how                                              install
===========  ===============================================  ===============================
onnxruntime  ``InferenceSession.run``                         the device install
openvino     ``Core.compile_model(..., "CPU")``, f32 forced   ``pip install 'edgeseq[runtimes]'``
tract        ``tract.onnx().load(...)``, a fresh state a call ``pip install 'edgeseq[runtimes]'``
reference    ``onnx.reference.ReferenceEvaluator`` (the spec)  ``pip install 'edgeseq[torch]'``
===========  ===============================================  ===============================

What a runtime cannot run is refused with the reason and the remedy, never run wrong:
tract refuses a recurrent node's ``sequence_lens`` fed from a graph input at load, and
OpenVINO and the reference evaluator (whose final ``Y_h``/``Y_c`` ignore ``sequence_lens``)
refuse a call in which a row has some but not all of the call's frames. Graphs exported
with ``lengths=False`` (native) or in the ``unrolled`` mode have neither problem.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import onnx

from edgeseq.contract import Contract
from edgeseq.errors import InputError, ModelLoadError, ProviderError
from edgeseq.exporters._onnx import read_contract

__all__ = ["RUNTIMES", "Runner", "RuntimeSpec", "open_runtime", "require_runtime"]


@dataclass(frozen=True)
class RuntimeSpec:
    """One runtime: the package that provides it and the extra that installs it."""

    name: str
    package: str  # the import name
    extra: str  # pip install 'edgeseq[<extra>]'
    description: str


RUNTIMES: dict[str, RuntimeSpec] = {
    s.name: s
    for s in (
        RuntimeSpec("onnxruntime", "onnxruntime", "", "onnxruntime's CPU session"),
        RuntimeSpec(
            "openvino", "openvino", "runtimes", "OpenVINO's CPU plugin, f32 forced: not bf16"
        ),
        RuntimeSpec("tract", "tract", "runtimes", "Sonos' tract (Rust), via its Python API"),
        RuntimeSpec("reference", "onnx", "torch", "onnx.reference.ReferenceEvaluator"),
    )
}


class Runner(Protocol):
    """One model loaded in one runtime."""

    name: str

    def run(self, names: Sequence[str], feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs ``names`` of one call on ``feed`` (every graph input by name)."""
        ...


def open_runtime(name: str, path: str | Path) -> Runner:
    """Load the model at ``path`` in runtime ``name`` (see :data:`RUNTIMES`).

    Raises :class:`ProviderError` when the runtime is unknown or not installed (saying
    which extra installs it) and :class:`ModelLoadError` when it refuses the model.
    """
    require_runtime(name)
    path = Path(path)
    if name == "onnxruntime":
        return _Ort(path)
    if path.suffix == ".ort":
        raise ModelLoadError(
            f"{path} is in ORT format, which only onnxruntime reads; verify the .onnx file "
            f"it was converted from with runtime {name!r}."
        )
    runner = {"openvino": _OpenVINO, "tract": _Tract, "reference": _Ref}[name]
    return runner(path, _Graph.read(path))


def require_runtime(name: str) -> None:
    """Raise :class:`ProviderError` unless runtime ``name`` is known and installed."""
    import importlib

    spec = RUNTIMES.get(name)
    if spec is None:
        raise ProviderError(f"runtime must be one of {list(RUNTIMES)}, got {name!r}")
    try:
        importlib.import_module(spec.package)
    except ImportError:
        raise ProviderError(
            f"runtime {name!r} needs the {spec.package!r} package, which is not installed: "
            f"pip install 'edgeseq[{spec.extra}]'"
        ) from None


@dataclass(frozen=True)
class _Graph:
    """What the runners need to know about a file: its contract, input and output order,
    and which graph input (if any) feeds recurrent nodes' ``sequence_lens``."""

    contract: Contract
    inputs: list[str]  # graph inputs that are not initializers, in order
    outputs: list[str]
    fed_sequence_lens: str | None

    @classmethod
    def read(cls, path: Path) -> _Graph:
        proto = onnx.load(str(path), load_external_data=False)
        inits = {t.name for t in proto.graph.initializer}
        inputs = [i.name for i in proto.graph.input if i.name not in inits]
        fed = {
            n.input[4]
            for n in proto.graph.node
            if n.op_type in ("LSTM", "GRU", "RNN") and len(n.input) > 4 and n.input[4] in inputs
        }
        return cls(
            read_contract(path),
            inputs,
            [o.name for o in proto.graph.output],
            min(fed, default=None),
        )

    def refuse_partial_rows(self, runtime: str, feed: Mapping[str, np.ndarray]) -> None:
        """Refuse a call in which a row has some but not all of the call's frames."""
        if self.fed_sequence_lens is None:
            return
        frames = feed[self.contract.frames.name]
        t_axis = self.contract.frames.time_axis
        total = frames.shape[1 if t_axis is None else t_axis]
        valid = np.asarray(feed[self.fed_sequence_lens])
        partial = valid[(valid > 0) & (valid < total)]
        if partial.size:
            raise InputError(
                f"{runtime} cannot run rows with {sorted(set(partial.tolist()))} of a call's "
                f"{total} frames through recurrent ops: its final state ignores sequence_lens. "
                "Expected rows of all or none of the call's frames; "
                "export with lengths=False (CLI --no-lengths) for this runtime."
            )


class _Ort:
    name = "onnxruntime"

    def __init__(self, path: Path) -> None:
        from edgeseq.runtime._session import open_session

        self.session = open_session(path)

    def run(self, names: Sequence[str], feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(list(names), dict(feed))


class _OpenVINO:
    """OpenVINO's CPU plugin with f32 inference: on CPUs with AVX512_BF16 it defaults to
    bf16, which moves outputs by 3e-4 to 2e-3 (measured), far beyond parity tolerance."""

    name = "openvino"

    def __init__(self, path: Path, graph: _Graph) -> None:
        import openvino as ov

        core = ov.Core()
        try:
            self.compiled = core.compile_model(
                core.read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
            )
        except Exception as exc:
            raise ModelLoadError(f"OpenVINO could not load {path}: {_first_line(exc)}") from None
        self.request = self.compiled.create_infer_request()
        self.graph = graph

    def run(self, names: Sequence[str], feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        self.graph.refuse_partial_rows(self.name, feed)
        res = self.request.infer(dict(feed))
        return [np.array(res[self.compiled.output(n)], copy=True) for n in names]


class _Tract:
    """tract: inputs and outputs by position (it names outputs after internal nodes), and a
    fresh state per call (a reused ``State`` ignores fed state on native recurrent nodes
    after its first call)."""

    name = "tract"

    def __init__(self, path: Path, graph: _Graph) -> None:
        import tract

        try:
            self.runnable = tract.onnx().load(str(path)).into_model().into_runnable()
        except Exception as exc:
            why = _first_line(exc)
            if "seq_len" in str(exc):
                raise ModelLoadError(
                    f"tract refuses {path.name}: its recurrent nodes take sequence_lens from "
                    f"the {graph.fed_sequence_lens!r} input (tract: 'Non constant seq_len is "
                    "not supported'). Export with lengths=False (CLI --no-lengths) for tract."
                ) from None
            raise ModelLoadError(f"tract could not load {path}: {why}") from None
        self.graph = graph

    def run(self, names: Sequence[str], feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        outs = self.runnable.spawn_state().run([feed[n] for n in self.graph.inputs])
        by_name = dict(zip(self.graph.outputs, (t.to_numpy() for t in outs)))
        return [by_name[n] for n in names]


class _Ref:
    """The ONNX spec's own semantics, in numpy: slow, for small models."""

    name = "reference"

    def __init__(self, path: Path, graph: _Graph) -> None:
        from onnx.reference import ReferenceEvaluator

        self.evaluator = ReferenceEvaluator(str(path))
        self.graph = graph

    def run(self, names: Sequence[str], feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        self.graph.refuse_partial_rows(self.name, feed)
        return [np.asarray(a) for a in self.evaluator.run(list(names), dict(feed))]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
