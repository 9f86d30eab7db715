"""The benchmark's reference models: one SeqModel per cell, exported in every mode and precision.

Each variant that this edgeseq build cannot produce (an export mode that is not
registered, no quantizer, no ORT-format converter) is recorded with the reason in
:attr:`Prepared.missing`, and the report shows it as "not available"; nothing is faked.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeseq.train.models import SeqModel

__all__ = ["VARIANTS", "Prepared", "RefSpec", "identity_model", "prepare"]

# variant -> what it is; "fp32" in the report means the native variant
VARIANTS: dict[str, str] = {
    "native": "fp32, ONNX LSTM/GRU/RNN ops",
    "native_lengths": "native with a lengths input wired to sequence_lens (onnxruntime only)",
    "unrolled": "fp32, basic ops per frame; single frames through its one-step graph",
    "unrolled_padded": "the unrolled file without its step graph: every call pads to the chunk",
    "int8": "dynamic int8 weights (from native)",
    "fp16": "float16 weights (from native)",
    "ort": "native in ORT format",
}

Progress = Callable[[str], None]


@dataclass(frozen=True)
class RefSpec:
    """The reference model's sizes; the issue's reference is 40 -> 128 x 2 -> linear head."""

    cell: str
    input_size: int = 40
    hidden_size: int = 128
    layers: int = 2
    output_size: int = 8

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Prepared:
    """Everything the sections of one cell run on."""

    spec: RefSpec
    model: SeqModel  # the torch model, eval mode
    checkpoint: Path
    identity: Path  # the floor: one Identity op of the frame's shape
    files: dict[str, Path] = field(default_factory=dict)  # variant -> model file
    missing: dict[str, str] = field(default_factory=dict)  # variant -> why not available
    export_s: dict[str, list[float]] = field(default_factory=dict)  # variant -> seconds


def identity_model(path: Path, input_size: int) -> Path:
    """Write an ONNX model whose one node is Identity on a ``(1, 1, input_size)`` frame."""
    import onnx
    from onnx import TensorProto, helper

    shape = [1, 1, input_size]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "floor",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime edgeseq supports
    onnx.save(model, str(path))
    return path


def _timed(fn: Callable[[], object], repeats: int) -> list[float]:
    """Run ``fn`` once to warm up, then ``repeats`` times; return the timed seconds."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _attempt(
    prep: Prepared, variant: str, path: Path, fn: Callable[[], object], repeats: int
) -> None:
    """Time ``fn`` into ``prep``; a failure makes the variant "not available" with its error."""
    from edgeseq.errors import EdgeseqError

    try:
        prep.export_s[variant] = _timed(fn, repeats)
    except (EdgeseqError, RuntimeError, ValueError) as exc:
        first = " ".join(str(exc).split())[:200]
        prep.missing[variant] = f"{variant} failed in this build: {first}"
        return
    prep.files[variant] = path


def _quantizer() -> Callable[..., Any] | None:
    try:
        from edgeseq.exporters import quantize
    except ImportError:
        return None
    return quantize


def _ort_converter() -> Callable[[Path, Path], Path] | None:
    """``(model.onnx, folder) -> model.ort`` through edgeseq's converter, if this build has one."""
    try:
        from edgeseq.exporters import to_ort
    except ImportError:
        return None
    return lambda src, folder: to_ort(src, folder).ort


def prepare(spec: RefSpec, workdir: Path, repeats: int, progress: Progress) -> Prepared:
    """Build, checkpoint and export ``spec`` in every variant; time each export ``repeats``×."""
    import torch

    from edgeseq.exporters import MODES
    from edgeseq.exporters.seq import export_model
    from edgeseq.train.checkpoint import save_checkpoint
    from edgeseq.train.models import SeqConfig, SeqModel

    torch.manual_seed(0)
    config = SeqConfig(
        cell=spec.cell,  # type: ignore[arg-type]
        input_size=spec.input_size,
        hidden_size=spec.hidden_size,
        layers=spec.layers,
        output_size=spec.output_size,
    )
    model = SeqModel(config).eval()
    workdir.mkdir(parents=True, exist_ok=True)
    prep = Prepared(
        spec=spec,
        model=model,
        checkpoint=save_checkpoint(workdir / f"{spec.cell}.pt", model),
        identity=identity_model(workdir / "identity.onnx", spec.input_size),
    )
    for variant, mode, lengths in (
        ("native", "native", None),
        ("native_lengths", "native", True),
        ("unrolled", "unrolled", None),
    ):
        if mode not in MODES:
            prep.missing[variant] = f"export mode {mode!r} is not registered in this build"
            continue
        path = workdir / f"{spec.cell}.{variant}.onnx"
        progress(f"export {variant} ({repeats + 1}×)")

        def run(p: Path = path, m: str = mode, n: bool | None = lengths) -> object:
            return export_model(model, p, mode=m, lengths=n)

        _attempt(prep, variant, path, run, repeats)
    unrolled = prep.files.get("unrolled")
    if unrolled is None:
        prep.missing["unrolled_padded"] = "no unrolled export in this build"
    else:  # the same file alone in a folder: the runtime finds no step graph and pads
        padded = workdir / "padded" / unrolled.name
        padded.parent.mkdir(exist_ok=True)
        shutil.copy(unrolled, padded)
        prep.files["unrolled_padded"] = padded
    native = prep.files.get("native")
    quantize = _quantizer()
    for kind in ("int8", "fp16"):
        if native is None or quantize is None:
            prep.missing[kind] = "edgeseq.exporters.quantize is not available in this build"
            continue
        path = workdir / f"{spec.cell}.{kind}.onnx"
        progress(f"quantize {kind} ({repeats + 1}×)")
        _attempt(prep, kind, path, lambda p=path, k=kind: quantize(native, p, kind=k), repeats)
    convert = _ort_converter()
    if native is None or convert is None:
        prep.missing["ort"] = "no ORT-format converter in edgeseq.exporters in this build"
    else:
        folder = workdir / "ort"
        path = folder / f"{native.stem}.ort"  # where to_ort puts it
        progress(f"convert to ORT format ({repeats + 1}×)")
        _attempt(prep, "ort", path, lambda: convert(native, folder), repeats)
    return prep
