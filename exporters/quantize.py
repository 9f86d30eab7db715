"""int8 and fp16 copies of an exported model, with a report of what they trade.

- ``int8``: onnxruntime's dynamic quantization (``quantize_dynamic``, signed int8
  weights): ONNX LSTM becomes ``DynamicQuantizeLSTM`` (which keeps ``sequence_lens``, so
  ``lengths`` still works), MatMul becomes ``MatMulInteger`` with dynamic activation
  scales. GRU and RNN have no quantized kernel in onnxruntime and stay fp32. The
  quantizer only sees weights stored as initializers; a graph that computes them is
  constant-folded by onnxruntime first.
- ``fp16``: onnxruntime's maintained converter (``onnxruntime.transformers.float16``)
  with ``keep_io_types=True``: inputs, outputs and state stay float32, so the contract
  and the runtime do not change.

The contract is carried into the new file with ``model.extra["quantization"]``, and the
new file is loaded once in a child process before it is kept, so a model that crashes
onnxruntime is never handed out.
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
import onnx

from edgeseq.contract import Contract
from edgeseq.errors import ExportError
from edgeseq.exporters._onnx import attach_contract, op_histogram, read_contract, save_checked
from edgeseq.exporters._quant_report import QuantReport, measure
from edgeseq.exporters.export import sibling_path

__all__ = ["QUANT_KINDS", "QuantReport", "quantize"]

Kind = Literal["int8", "fp16"]
QUANT_KINDS: tuple[str, ...] = ("int8", "fp16")
# onnxruntime 1.32's CPU optimizer crashes (SIGSEGV, ORT_ENABLE_ALL) on an fp16 Transpose
# in these graphs; a Transpose moves data without arithmetic, so keeping it fp32 costs
# only two Casts.
_FP16_KEEP_FP32 = ("Transpose",)


def quantize(
    src: str | Path,
    dst: str | Path,
    kind: Kind = "int8",
    *,
    held_out: np.ndarray | None = None,
    targets: np.ndarray | None = None,
    latency_frames: int = 200,
) -> QuantReport:
    """Write an ``int8`` or ``fp16`` copy of the edgeseq model ``src`` to ``dst``.

    Parameters
    ----------
    held_out
        Frames in the user's units, ``[T, F]`` (one sequence) or ``[N, T, F]``, run through
        both models to measure the difference (default: seeded synthetic frames).
    targets
        Optional ground truth for ``held_out``, ``[N, T, out]`` (or ``[N, T]`` class ids for
        classifiers): adds the task metric (MSE, or accuracy) of both models.
    latency_frames
        Frames stepped one at a time to time each model.

    Returns
    -------
    QuantReport
        Size, per-frame latency and the differences for the fp32 and the new model;
        ``report.table()`` prints it.
    """
    from edgeseq.runtime import StreamingPredictor

    if kind not in QUANT_KINDS:
        raise ExportError(f"quantization kind must be one of {list(QUANT_KINDS)}, got {kind!r}")
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise ExportError(f"dst must differ from src ({src}); write e.g. {src.stem}.{kind}.onnx")
    contract = StreamingPredictor(src).contract  # refuses files without a valid contract
    if contract.model.extra.get("quantization"):
        raise ExportError(
            f"{src} is already quantized ({contract.model.extra['quantization']['kind']}); "
            "quantize the fp32 model instead."
        )
    overrides: dict = {}
    if isinstance(contract.model.extra.get("step_model"), dict):  # beside an unrolled graph
        overrides["step_model"] = _quantize_step(src, dst, contract, kind)
    info = _write_quantized(src, dst, contract, kind, overrides)
    _smoke_load(dst)
    _smoke_load(dst)
    report = measure(src, dst, kind, held_out, targets, latency_frames)
    if info.get("kept_fp32") and kind == "int8":
        report.notes.append(
            f"{', '.join(info['kept_fp32'])} kept fp32: onnxruntime has no dynamic int8 kernel "
            "for them (only LSTM and MatMul/Gemm-like ops are quantized)"
        )
    if kind == "fp16":
        report.notes.append(
            "fp16 halves the weights; on CPUs without fp16 arithmetic onnxruntime computes in "
            "fp32 behind casts, so latency does not improve there"
        )
    return report


def _write_quantized(
    src: Path, dst: Path, contract: Contract, kind: str, overrides: dict | None = None
) -> dict:
    """Quantize one graph file and save it with ``contract``, the quantization record and
    ``overrides`` of ``model.extra`` (a None value removes the key)."""
    proto = onnx.load(str(src))
    out, info = _int8(proto) if kind == "int8" else _fp16(proto)
    info["source"] = src.name
    extra = {**contract.model.extra, "quantization": info, **(overrides or {})}
    extra = {k: v for k, v in extra.items() if v is not None}
    init = extra.get("init_model")
    if init and (dst.parent / _quantized_name(init, kind)).exists():
        extra["init_model"] = _quantized_name(init, kind)  # a quantized encoder sits beside it
    facts = dataclasses.replace(contract.model, extra=extra)
    attach_contract(out, dataclasses.replace(contract, model=facts))
    save_checked(out, dst)
    return info


def _quantize_step(src: Path, dst: Path, contract: Contract, kind: str) -> dict | None:
    """Quantize the one-step graph beside ``src`` the same way, beside ``dst``; return the
    contract's new ``step_model`` record (None when ``src`` has no step graph beside it:
    the quantized model then pads short calls rather than mix in fp32 weights)."""
    step_src = src.with_name(str(contract.model.extra["step_model"].get("file", "")))
    if not step_src.is_file():
        return None
    step_dst = sibling_path(dst, "step")
    _write_quantized(step_src, step_dst, read_contract(step_src), kind)
    digest = read_contract(step_dst).producer["weights_sha256"]
    return {"file": step_dst.name, "weights_sha256": digest}


def _quantized_name(name: str, kind: str) -> str:
    """``m.encoder.onnx`` -> ``m.encoder.int8.onnx``: where export --quantize writes a copy."""
    stem, _, suffix = name.rpartition(".")
    return f"{stem}.{kind}.{suffix}" if stem else f"{name}.{kind}"


def _recurrent_weights_constant(proto: onnx.ModelProto) -> bool:
    inits = {t.name for t in proto.graph.initializer}
    return all(
        node.input[1] in inits and node.input[2] in inits
        for node in proto.graph.node
        if node.op_type in ("LSTM", "GRU", "RNN")
    )


def _fold_constants(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Constant-fold with onnxruntime (basic level: folding, no hardware-specific rewrites)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in.onnx", Path(tmp) / "folded.onnx"
        onnx.save(proto, str(src))
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.optimized_model_filepath = str(out)
        ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])
        folded = onnx.load(str(out))
    del folded.metadata_props[:]
    folded.metadata_props.extend(proto.metadata_props)
    return folded


def _int8(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, dict]:
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folded = False
    if not _recurrent_weights_constant(proto):
        proto, folded = _fold_constants(proto), True
        if not _recurrent_weights_constant(proto):
            raise ExportError(
                "the recurrent nodes' weights are computed in the graph, not stored as "
                "constants, even after constant folding, so dynamic quantization cannot "
                "see them. Re-export with backend='torchscript'."
            )
    before = op_histogram(proto)
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(proto, str(src))
        root = logging.getLogger()  # quantize_dynamic logs a pre-processing hint on root
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            quantize_dynamic(
                src, out, weight_type=QuantType.QInt8, extra_options={"MatMulConstBOnly": True}
            )
        except Exception as exc:
            raise ExportError(
                f"onnxruntime's quantize_dynamic failed: {type(exc).__name__}: {exc}"
            ) from None
        finally:
            root.setLevel(level)
        q = onnx.load(str(out))
    after = op_histogram(q)
    changed = sorted(op for op in after if op not in before)
    if not changed:
        raise ExportError(
            f"int8 quantization changed nothing: the graph has no op onnxruntime quantizes "
            f"dynamically (LSTM, MatMul, Gather...; got {sorted(before)}). Try --fp16."
        )
    return q, {
        "kind": "int8",
        "tool": "onnxruntime.quantization.quantize_dynamic (QInt8 weights)",
        "onnxruntime": onnxruntime.__version__,
        "quantized_ops": changed,
        "constant_folded": folded,
        "kept_fp32": sorted({"GRU", "RNN"} & set(before)),
    }


def _fp16(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, dict]:
    import onnxruntime
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    try:
        q = convert_float_to_float16(
            proto,
            keep_io_types=True,
            op_block_list=[*DEFAULT_OP_BLOCK_LIST, *_FP16_KEEP_FP32],
        )
        # the converter appends the Casts around kept-fp32 nodes at the end of the list
        OnnxModel.graph_topological_sort(q.graph, is_deterministic=True)
    except Exception as exc:
        raise ExportError(
            f"onnxruntime's fp16 converter failed: {type(exc).__name__}: {exc}"
        ) from None
    return q, {
        "kind": "fp16",
        "tool": "onnxruntime.transformers.float16.convert_float_to_float16 (keep_io_types)",
        "onnxruntime": onnxruntime.__version__,
        "kept_fp32": list(_FP16_KEEP_FP32),
    }


def _smoke_load(path: Path) -> None:
    """Open ``path`` in a child process with onnxruntime's default (full) optimizations.

    A crash there (onnxruntime has segfaulted on some converted graphs) would otherwise
    take down the caller's process later, far from its cause.
    """
    code = (
        "import sys, onnxruntime as o; "
        "o.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300
    )
    if res.returncode != 0:
        path.unlink(missing_ok=True)
        last = (res.stderr.strip().splitlines() or [f"exit status {res.returncode}"])[-1]
        raise ExportError(
            f"onnxruntime cannot load the quantized model (exit {res.returncode}: {last[:300]}); "
            "nothing was written. Try the other kind (--int8/--fp16) and report the model."
        )
