"""ORT format for onnxruntime's minimal (reduced-size) builds on mobile and embedded devices.

:func:`to_ort` runs onnxruntime's own converter (``onnxruntime.tools.
convert_onnx_models_to_ort``) on an exported model and writes, beside it:

- ``MODEL.ort``: the flatbuffer model a minimal build loads (graph optimizations applied
  at conversion, the "Fixed" style);
- ``MODEL.required_operators.config``: the operators a reduced build must include
  (``build.sh --include_ops_by_config MODEL.required_operators.config``).

The ORT format keeps the ONNX file's ``metadata_props``, so the state contract travels
inside the ``.ort`` file and :class:`~edgeseq.runtime.StreamingPredictor` loads it as is;
:func:`to_ort` checks that, and also writes the contract as ``MODEL.contract.json`` for
tools that cannot read ORT files (:func:`read_contract_json` loads it back).
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgeseq.contract import Contract
from edgeseq.errors import ContractError, ExportError

__all__ = ["OrtArtifacts", "read_contract_json", "to_ort"]


@dataclass(frozen=True)
class OrtArtifacts:
    """Files written by :func:`to_ort`."""

    ort: Path
    operators_config: Path
    contract_json: Path


def to_ort(model_path: str | Path, out_dir: str | Path | None = None) -> OrtArtifacts:
    """Convert the ONNX model at ``model_path`` to ORT format; return the written files.

    Outputs go to ``out_dir`` (default: beside the model) as ``<stem>.ort``,
    ``<stem>.required_operators.config`` and ``<stem>.contract.json``.
    """
    from onnxruntime.tools.convert_onnx_models_to_ort import (
        OptimizationStyle,
        convert_onnx_models_to_ort,
    )

    from edgeseq.runtime import StreamingPredictor

    src = Path(model_path)
    if not src.is_file() or src.suffix != ".onnx":
        raise ExportError(
            f"to_ort expects an existing .onnx file, got {str(src)!r}. Export one first "
            "(edgeseq export ... -o MODEL.onnx)."
        )
    contract = StreamingPredictor(src).contract  # refuses a model without a valid contract
    dest = Path(out_dir) if out_dir is not None else src.parent
    dest.mkdir(parents=True, exist_ok=True)
    # the tool converts every model in a folder: give it one that holds just ours
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / src.name
        shutil.copyfile(src, work)
        logger = logging.getLogger("ort_format_model.utils")  # the tool logs at INFO
        level = logger.level
        logger.setLevel(logging.WARNING)
        try:
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                convert_onnx_models_to_ort(
                    work,
                    output_dir=Path(tmp) / "out",
                    optimization_styles=[OptimizationStyle.Fixed],
                )
        except Exception as exc:
            raise ExportError(
                f"onnxruntime's ORT converter failed on {src}: {type(exc).__name__}: {exc}"
            ) from None
        finally:
            logger.setLevel(level)
        out = Path(tmp) / "out"
        made_ort = out / f"{src.stem}.ort"
        made_cfg = out / f"{src.stem}.required_operators.config"
        if not made_ort.is_file() or not made_cfg.is_file():
            raise ExportError(
                f"onnxruntime's ORT converter wrote {sorted(p.name for p in out.iterdir())}, "
                f"expected {made_ort.name} and {made_cfg.name}."
            )
        ort_path = dest / made_ort.name
        cfg_path = dest / made_cfg.name
        shutil.copyfile(made_ort, ort_path)
        shutil.copyfile(made_cfg, cfg_path)
    json_path = dest / f"{src.stem}.contract.json"
    json_path.write_text(contract.to_json() + "\n")
    try:
        kept: str | None = StreamingPredictor(ort_path).contract.to_json()
    except ContractError:  # the .ort lost the metadata
        kept = None
    if kept != contract.to_json():
        raise ExportError(
            f"{ort_path} does not carry the same contract as {src}; load it with "
            f"StreamingPredictor({str(ort_path)!r}, contract=read_contract_json("
            f"{str(json_path)!r}))."
        )
    return OrtArtifacts(ort=ort_path, operators_config=cfg_path, contract_json=json_path)


def read_contract_json(path: str | Path) -> Contract:
    """Load a contract written beside a model (``MODEL.contract.json``)."""
    p = Path(path)
    if not p.is_file():
        raise ExportError(f"no contract file at {str(p)!r}; to_ort writes <model>.contract.json")
    return Contract.from_json(p.read_text())
