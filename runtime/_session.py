"""Open an onnxruntime session with clear errors; map device names to providers."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from edgeseq.contract import GraphIO, onnx_type_to_dtype
from edgeseq.errors import ModelLoadError, ProviderError

__all__ = ["Device", "ModelSource", "graph_io", "open_session", "parse_device", "resolve_providers"]

ModelSource = str | os.PathLike | bytes

_DEVICE_PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "gpu": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "nnapi": "NnapiExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "qnn": "QNNExecutionProvider",
}
# where a provider keeps tensors: OrtValues bound there never cross to the host between calls
_MEMORY = {"CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "cuda"}


@dataclass(frozen=True)
class Device:
    """A resolved device: the provider list for the session and where state buffers live.

    ``memory`` is an OrtValue device type (``"cpu"`` or ``"cuda"``); providers that
    onnxruntime's Python API cannot allocate for keep state in CPU memory.
    """

    name: str  # what the user asked for, e.g. "cuda:1"
    providers: tuple[str, ...]
    memory: str = "cpu"
    index: int = 0

    @property
    def provider_options(self) -> list[dict[str, str]]:
        return [{"device_id": str(self.index)} if p in _MEMORY else {} for p in self.providers]


def parse_device(device: str) -> Device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``, ... or a provider's own name -> :class:`Device`.

    Raises :class:`ProviderError` listing what this onnxruntime build has when the
    requested provider is not installed.
    """
    available = ort.get_available_providers()
    if not isinstance(device, str) or not device:
        raise ProviderError(
            f"device must be a name such as 'cpu' or 'cuda', got {device!r}. "
            f"Available providers: {available}."
        )
    base, _, index = device.partition(":")
    if index and not index.isdigit():
        raise ProviderError(
            f"device {device!r}: expected NAME or NAME:INDEX (e.g. 'cuda:1'), got index "
            f"{index!r}. Available providers: {available}."
        )
    name = _DEVICE_PROVIDERS.get(base.lower(), base)
    if name not in available:
        hint = " (install onnxruntime-gpu for CUDA)" if name == "CUDAExecutionProvider" else ""
        known = sorted(_DEVICE_PROVIDERS)
        raise ProviderError(
            f"device {device!r} needs {name}, which this onnxruntime build does not have"
            f"{hint}. Available: {available}; pick one of them, e.g. device='cpu' "
            f"(short names: {known})."
        )
    providers = (name,) if name == "CPUExecutionProvider" else (name, "CPUExecutionProvider")
    return Device(device, providers, _MEMORY.get(name, "cpu"), int(index or 0))


def resolve_providers(device: str) -> list[str]:
    """The provider list for ``device`` (CPU as fallback); see :func:`parse_device`."""
    return list(parse_device(device).providers)


def open_session(
    model: ModelSource, device: str | Device = "cpu", threads: int | None = None
) -> ort.InferenceSession:
    """An InferenceSession for a path or serialized bytes (.onnx or .ort)."""
    dev = device if isinstance(device, Device) else parse_device(device)
    opts = ort.SessionOptions()
    if threads is not None:
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(
                f"threads must be a positive int or None (onnxruntime's default), got {threads!r}"
            )
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 4  # fatal only: our own errors say what went wrong, once
    if isinstance(model, (bytes, bytearray, memoryview)):
        source, what = bytes(model), f"model bytes ({len(model)} bytes)"
        if not source:
            raise ModelLoadError("model bytes are empty: expected a serialized ONNX model.")
    else:
        path = Path(os.fspath(model))
        what = str(path)
        if not path.exists():
            raise ModelLoadError(
                f"model file {what!r} does not exist. Check the path, or export one with "
                "`edgeseq export CHECKPOINT -o MODEL.onnx`."
            )
        if path.is_dir():
            raise ModelLoadError(f"{what!r} is a folder; expected an .onnx or .ort file.")
        if path.suffix == ".ort":
            opts.add_session_config_entry("session.load_model_format", "ORT")
        source = str(path)
    try:
        return ort.InferenceSession(
            source,
            sess_options=opts,
            providers=list(dev.providers),
            provider_options=dev.provider_options,
        )
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"onnxruntime could not load {what}: expected a complete ONNX (or ORT) model, but "
            f"parsing failed ({first[:300]}). The file may be truncated or not a model: "
            "re-export it."
        ) from None


def graph_io(session: ort.InferenceSession) -> tuple[list[GraphIO], list[GraphIO]]:
    """The session's inputs and outputs as :class:`GraphIO` records."""

    def rec(arg: ort.NodeArg) -> GraphIO:
        shape = list(arg.shape) if arg.shape is not None else []
        return GraphIO(arg.name, shape, onnx_type_to_dtype(arg.type))

    return [rec(a) for a in session.get_inputs()], [rec(a) for a in session.get_outputs()]
