"""Read both sides of a Triton model: ``config.pbtxt`` through Triton's schema, and the graph.

:func:`load_config` parses a config with ``tritonclient``'s ``model_config_pb2`` (the enum
helpers name its dtypes and control kinds); :func:`_graph` lists an ONNX file's inputs,
outputs and metadata as onnxruntime loads it. :mod:`._check` compares the two sides;
:mod:`.emulate` drives a graph as its config says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeseq.errors import RepositoryError

__all__ = ["load_config"]

_DTYPES = {
    "TYPE_FP32": "float32",
    "TYPE_FP16": "float16",
    "TYPE_FP64": "float64",
    "TYPE_INT64": "int64",
    "TYPE_INT32": "int32",
    "TYPE_BOOL": "bool",
    "TYPE_UINT8": "uint8",
    "TYPE_INT8": "int8",
    "TYPE_UINT64": "uint64",
    "TYPE_STRING": "string",
}
_CONTROL_DTYPES = {"int32_false_true": "int32", "fp32_false_true": "float32"}
_CONTROL_DTYPES["bool_false_true"] = "bool"


def load_config(path: Path) -> Any:
    """Parse ``config.pbtxt`` with Triton's schema; RepositoryError names the line and field."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise RepositoryError(
            "validating a Triton config needs tritonclient (Triton's schema); install it: "
            "pip install 'edgeseq[triton]'."
        ) from None
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise RepositoryError(f"cannot read {path}: {exc.strerror or exc}.") from None
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise RepositoryError(
            f"{path}:{str(exc).rstrip('.')}; expected Triton's ModelConfig text format "
            "(model_config.proto). Fix the field, or regenerate with edgeseq triton."
        ) from None


def _dtype_name(value: int) -> str:
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2.DataType.Name(value)


def _kind_name(value: int) -> str:
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2.ModelSequenceBatching.Control.Kind.Name(value)


def _graph(path: Path) -> tuple[dict, dict, dict]:
    """``(inputs, outputs, metadata)`` of an ONNX file, by name -> (dtype, shape)."""
    import onnxruntime as ort

    from edgeseq.contract import onnx_type_to_dtype

    try:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RepositoryError(f"{path}: onnxruntime cannot load it ({first}).") from None

    def table(items: list) -> dict:
        out = {}
        for v in items:
            try:
                dtype = onnx_type_to_dtype(v.type)
            except Exception:
                dtype = v.type
            shape = [d if isinstance(d, int) else "?" for d in v.shape]
            out[v.name] = (dtype, shape)
        return out

    meta = s.get_modelmeta().custom_metadata_map
    return table(s.get_inputs()), table(s.get_outputs()), dict(meta)
