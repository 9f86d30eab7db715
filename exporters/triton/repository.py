"""``to_triton``: a Triton model repository for a streaming model, from its contract."""

from __future__ import annotations

import dataclasses
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from edgeseq.contract import Contract
from edgeseq.errors import ExportError, ModelLoadError
from edgeseq.exporters._onnx import attach_contract, save_checked
from edgeseq.exporters.triton._config import Backend, TritonOptions, config_text
from edgeseq.exporters.triton._onnxgraph import Editor
from edgeseq.exporters.triton._variant import init_variant, triton_variant

if TYPE_CHECKING:
    from edgeseq.runtime import LoadOptions

__all__ = ["TritonRepository", "to_triton"]

_MODEL_PY = Path(__file__).with_name("_model_py.py")
_CONDITIONED = ("one_to_many", "seq2seq")


@dataclass(frozen=True)
class TritonRepository:
    """What :func:`to_triton` wrote: ``root/<name>/config.pbtxt`` and ``root/<name>/1/...``.

    ``models`` maps each model name to its folder (a conditioned decoder also gets its init
    model, ``<name>_init``); ``contracts`` holds the contract of each model's graph as
    written (the rewritten one for the onnxruntime backend).
    """

    root: Path
    name: str
    backend: str
    options: TritonOptions
    models: dict[str, Path] = field(default_factory=dict)
    contracts: dict[str, Contract] = field(default_factory=dict)

    def files(self) -> list[Path]:
        return sorted(p for d in self.models.values() for p in d.rglob("*") if p.is_file())


def _load(
    path: Path, constants: Mapping[str, Any] | None = None
) -> tuple[onnx.ModelProto, Contract]:
    from edgeseq.runtime.discover import read_contract

    if not path.is_file():
        raise ModelLoadError(f"no model file at {str(path)!r}; expected an exported .onnx file.")
    try:
        proto = onnx.load(str(path))
    except Exception as exc:
        raise ModelLoadError(f"{path} is not a readable ONNX file ({exc}); re-export it.") from None
    contract, found = read_contract(str(path), constants=dict(constants or {}))
    if found is not None:  # a third-party model: say what was guessed
        import warnings

        from edgeseq.runtime import DiscoveryWarning

        warnings.warn(
            DiscoveryWarning(
                f"{path} has no edgeseq contract; serving the state pairs discovered by shape:"
                f"\n{found.report()}\nStore them once with `edgeseq inspect MODEL "
                "--write-contract OUT.onnx` to make this choice explicit."
            ),
            stacklevel=3,
        )
    return proto, contract


def _runtime_check(src: Path, c: Contract, loading: LoadOptions, backend: str) -> None:
    """Serve only what edgeseq's runtime streams correctly: the same refusals (a model whose
    state depends on how its samples are cut, a missing window...) with the same words."""
    import warnings

    from edgeseq.errors import EdgeseqError
    from edgeseq.runtime import StreamingPredictor, StreamPool

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a discovered contract was reported by _load
        try:  # the file as a user would stream it: discovery, probing and cut checks included
            engine = StreamingPredictor(src, options=loading).engine
            if backend == "python" and c.model.stateful and c.states:
                StreamPool(src, max_streams=1, options=loading).shutdown()
        except EdgeseqError as exc:
            raise ExportError(
                f"{src}: edgeseq's runtime cannot stream this model as given, so a Triton "
                f"model of it would not either: {exc}"
            ) from None
    if engine.windows is not None:
        raise ExportError(
            f"{src} takes fixed windows of {engine.windows.window} samples; Triton "
            "repositories do not serve windowed models yet (a request's output count would "
            "vary). Stream it with StreamingPredictor/StreamPool(window=...)."
        )
    f = c.frames
    if f.batch_axis is None or f.time_axis is None:
        raise ExportError(
            f"{src}: frames {f.name!r} {f.shape} have no "
            f"{'batch' if f.batch_axis is None else 'time'} axis; Triton batches requests "
            "of many sequences along a batch axis, each holding frames in time. Re-export "
            "with (batch, time, ...) frames."
        )
    if backend == "onnxruntime" and any(s.batch_axis is None for s in c.states):
        raise ExportError(
            f"{src}: a state has no batch axis, so Triton cannot batch sequences' states; "
            "re-export with a batch axis."
        )


def _name(path: Path, name: str | None) -> str:
    name = name or re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem)
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise ExportError(
            f"model name {name!r}: expected letters, digits, '_', '.' or '-' (it names a folder "
            "and Triton's model); pass --name."
        )
    return name


def _baked(proto: onnx.ModelProto, c: Contract, constants: Mapping[str, Any] | None):
    """The model with its constant inputs baked in (the python backend steps it as is)."""
    if not c.constants:
        return proto, c
    import numpy as np

    given = dict(constants or {})
    missing = [n for n in c.constants if n not in given]
    if missing:
        raise ExportError(
            f"the model needs constant inputs {missing} on every call; expected their values "
            "in constants={name: value}, which are baked into the served graph."
        )
    edit = Editor(onnx.ModelProto.FromString(proto.SerializeToString()))
    dtypes = {vi.name: vi.type.tensor_type.elem_type for vi in edit.graph.input}
    for n in c.constants:
        edit.bake(n, np.asarray(given[n], onnx.helper.tensor_dtype_to_np_dtype(dtypes[n])))
    return edit.proto, dataclasses.replace(c, constants=[])


def to_triton(
    model: str | Path,
    repository: str | Path,
    *,
    name: str | None = None,
    backend: Backend = "onnxruntime",
    options: TritonOptions | None = None,
    constants: Mapping[str, Any] | None = None,
) -> TritonRepository:
    """Write a Triton model repository serving ``model``; validate it; return what was written.

    Parameters
    ----------
    model
        A streaming ``.onnx`` model with an edgeseq contract (or a third-party stateful
        model whose state pairs edgeseq can discover).
    repository
        The repository folder; ``<name>/`` inside it is replaced, other models are kept.
    backend
        ``onnxruntime``: the graph rewritten for Triton's implicit state (batch-first state,
        START resets it, READY for the ``direct`` strategy, preprocessing baked in); needs
        NVIDIA's Triton container or a build with the onnxruntime backend. ``python``: a
        ``model.py`` stepping an edgeseq StreamPool keyed by correlation id; runs on any
        Triton with the python backend and edgeseq installed in its Python environment.
    options
        Batching and sequence limits, see :class:`TritonOptions`.
    constants
        Values for the model's constant inputs (e.g. a sample rate), baked into the graph.

    Raises
    ------
    InputError
        ``constants`` is not a mapping of input names (checked as a
        :class:`~edgeseq.runtime.LoadOptions`, before anything is read or written).
    ExportError
        The model cannot be served this way (the message says why and what to use instead).
    RepositoryError
        The written repository failed validation (a bug: please report it).
    """
    from edgeseq.exporters.triton._check import check_repository
    from edgeseq.runtime import LoadOptions

    opts = options or TritonOptions()
    _check_options(opts, backend)
    loading = LoadOptions(constants=constants)  # checked: a dict keyed by input name
    constants = loading.constants
    src = Path(model)
    proto, c = _load(src, constants)
    name = _name(src, name)
    root = Path(repository)
    models: dict[str, list[tuple[str, bytes | onnx.ModelProto | Contract]]] = {}
    contracts: dict[str, Contract] = {}
    conditioned = c.model.topology in _CONDITIONED and "init_model" in c.model.extra
    stateful = c.model.stateful and bool(c.states)
    baked, bc = _baked(proto, c, constants)
    _runtime_check(src, c, loading, backend)
    if conditioned:
        init_path = src.with_name(c.model.extra["init_model"])
        init_proto, init_c = _load(init_path)
        variant, vc = init_variant(init_proto, init_c, c)
        init_name = f"{name}_init"
        _add(models, contracts, init_name, variant, vc, backend, opts, False)
    if backend == "onnxruntime" or not stateful:
        variant, vc = triton_variant(
            proto, c, opts.strategy, constants=constants, seeded=conditioned
        )
        _add(models, contracts, name, variant, vc, backend, opts, conditioned)
    else:
        _add(models, contracts, name, baked, bc, backend, opts, conditioned)
    written = {}
    for model_name, files in models.items():
        written[model_name] = _write_model(root, model_name, files)
    check_repository(root, list(written))
    return TritonRepository(root, name, backend, opts, written, contracts)


def _check_options(opts: TritonOptions, backend: str) -> None:
    if backend not in ("onnxruntime", "python"):
        raise ExportError(f"backend must be 'onnxruntime' or 'python', got {backend!r}")
    for key in ("max_batch", "max_idle_us", "max_sequences"):
        value = getattr(opts, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ExportError(f"{key} must be a positive int, got {value!r}")
    if opts.strategy not in ("oldest", "direct"):
        raise ExportError(f"strategy must be 'oldest' or 'direct', got {opts.strategy!r}")
    if opts.threads is not None and (not isinstance(opts.threads, int) or opts.threads < 1):
        raise ExportError(f"threads must be a positive int or None, got {opts.threads!r}")
    if opts.queue_delay_us < 0:
        raise ExportError(f"queue_delay_us must be >= 0, got {opts.queue_delay_us!r}")


def _add(models, contracts, name, proto, contract, backend, opts, seeded) -> None:
    stored = attach_contract(proto, contract)  # checked against the graph, weights digest
    contracts[name] = stored
    files: list[tuple[str, Any]] = [("1/model.onnx", proto)]
    if backend == "python":
        files.append(("1/model.py", _MODEL_PY.read_text("utf-8")))
    text = config_text(name, stored, backend, opts, seeded=seeded)
    files.append(("config.pbtxt", text))
    models[name] = files


def _write_model(root: Path, name: str, files: list[tuple[str, Any]]) -> Path:
    """Write into a temporary folder beside the target, then swap it in."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        for rel, content in files:
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, onnx.ModelProto):
                save_checked(content, path)
            else:
                path.write_text(content, "utf-8")
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
