"""Where the CLI's PyTorch model comes from: an edgeseq checkpoint or a user's factory.

- ``CHECKPOINT`` (a file): :func:`edgeseq.train.checkpoint.load_checkpoint` -> ``SeqModel`` or
  ``Seq2Seq`` plus ``extra`` (preprocessing, vocabulary, labels).
- ``package.module:build``: ``build()`` returns any ``nn.Module``; ``--weights file.pt``
  (a state dict) loads with ``torch.load(weights_only=True)``, so no code is unpickled.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeseq.contract import Preprocessing
from edgeseq.errors import ExportError, ModelLoadError
from edgeseq.exporters._onnx import read_contract
from edgeseq.exporters._options import ExportOptions

__all__ = [
    "Source",
    "example_from_shape",
    "explain_source",
    "export_source",
    "load_source",
    "preprocessing_from",
]


@dataclass
class Source:
    """A loaded model and what came with it."""

    model: nn.Module
    kind: str  # "checkpoint" or "factory"
    extra: dict[str, Any] = field(default_factory=dict)


def preprocessing_from(extra: dict[str, Any], key: str = "preprocessing") -> Preprocessing | None:
    """A checkpoint's ``extra[key]`` as :class:`Preprocessing` (unknown keys ignored)."""
    raw = extra.get(key)
    if not isinstance(raw, dict):
        return None
    known = {f.name for f in fields(Preprocessing)}
    return Preprocessing(**{k: v for k, v in raw.items() if k in known})


def _factory(spec: str) -> nn.Module:
    mod_name, _, fn_name = spec.partition(":")
    if not mod_name or not fn_name:
        raise ExportError(f"factory must look like package.module:function, got {spec!r}")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:  # `edgeseq` is a console script: make the user's project importable
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ExportError(
            f"cannot import {mod_name!r} for factory {spec!r} ({exc}). Run from the folder "
            "that holds the package, or install it."
        ) from None
    finally:
        if added:
            sys.path.remove(cwd)
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise ExportError(f"{mod_name!r} has no callable {fn_name!r} (factory {spec!r})")
    try:
        model = fn()
    except Exception as exc:
        raise ExportError(
            f"factory {spec!r} raised {type(exc).__name__}: {exc}. It must build the model "
            "with no arguments."
        ) from None
    if not isinstance(model, nn.Module):
        raise ExportError(
            f"factory {spec!r} returned {type(model).__name__}; expected a torch.nn.Module"
        )
    return model


def _load_weights(model: nn.Module, weights: str | Path) -> None:
    path = Path(weights)
    if not path.is_file():
        raise ModelLoadError(f"weights file {str(path)!r} does not exist")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:
        raise ModelLoadError(
            f"{path} does not load with torch.load(weights_only=True) ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}). Save weights with "
            "torch.save(model.state_dict(), path)."
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path} holds a {type(state).__name__}, expected a state dict")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelLoadError(
            f"{path} does not fit the factory's model: {str(exc).splitlines()[0]} ..."
        ) from None


def load_source(spec: str, weights: str | Path | None = None) -> Source:
    """Load ``spec``: a checkpoint file, or a ``package.module:function`` factory."""
    if Path(spec).is_file():
        if weights is not None:
            raise ExportError(
                "--weights goes with a factory (package.module:build); a checkpoint "
                "already holds its weights"
            )
        from edgeseq.train.checkpoint import load_checkpoint

        model, extra = load_checkpoint(spec)
        return Source(model, "checkpoint", dict(extra))
    if ":" not in spec:
        raise ExportError(
            f"{spec!r} is neither a checkpoint file nor a factory; pass an existing "
            "checkpoint path or package.module:function"
        )
    model = _factory(spec)
    if weights is not None:
        _load_weights(model, weights)
    return Source(model.eval(), "factory")


def example_from_shape(shape: str | tuple[int, ...], dtype: str = "float32") -> torch.Tensor:
    """``"B,T,F"`` (or a tuple) -> a random example: normal floats, or zeros for int64 ids."""
    if isinstance(shape, str):
        try:
            dims = tuple(int(v) for v in re.split(r"[,x]", shape.strip()))
        except ValueError:
            raise ExportError(
                f"--example-shape must be comma-separated ints such as 2,16,3; got {shape!r}"
            ) from None
    else:
        dims = tuple(shape)
    if len(dims) < 2 or any(d < 1 for d in dims):
        raise ExportError(
            f"example shape must be (batch, time, ...) with sizes >= 1, got {dims}; "
            "e.g. --example-shape 2,16,3"
        )
    if dtype == "int64":
        return torch.zeros(dims, dtype=torch.int64)
    if dtype != "float32":
        raise ExportError(f"example dtype must be float32 or int64, got {dtype!r}")
    return torch.randn(dims, generator=torch.Generator().manual_seed(0))


def export_source(
    source: Source,
    path: str | Path,
    options: ExportOptions | None = None,
    example: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Export a loaded source; return ``{file path: contract}`` for every file written."""
    from edgeseq.exporters.export import export
    from edgeseq.exporters.seq import export_model

    opts = options or ExportOptions()
    if source.kind == "checkpoint":
        if opts.offline:
            raise ExportError(
                "--offline applies to factory models; an edgeseq checkpoint's topology "
                "already decides whether it streams"
            )
        return export_model(
            source.model,  # type: ignore[arg-type]
            path,
            preprocessing=preprocessing_from(source.extra),
            source_preprocessing=preprocessing_from(source.extra, "source_preprocessing"),
            options=opts,
        )
    contract = export(source.model, path, example=_factory_example(example), options=opts)
    written = {str(path): contract}
    ref = contract.model.extra.get("step_model")
    if isinstance(ref, dict):  # the one-step graph beside a fixed-chunk one
        step = Path(path).with_name(ref["file"])
        written[str(step)] = read_contract(step)
    return written


def explain_source(
    source: Source, options: ExportOptions | None = None, example: torch.Tensor | None = None
) -> list[Any]:
    """How each graph of a loaded source will stream (``ExplainReport`` per graph)."""
    from edgeseq.exporters.explain import explain
    from edgeseq.exporters.seq import explain_model

    opts = options or ExportOptions()
    if source.kind == "checkpoint":
        return explain_model(source.model, options=opts)  # type: ignore[arg-type]
    return [explain(source.model, _factory_example(example), options=opts)]


def _factory_example(example: torch.Tensor | None) -> torch.Tensor:
    if example is None:
        raise ExportError(
            "a factory model needs an example input: pass --example-shape B,T,F "
            "(e.g. 2,16,3 for 3 features per frame)"
        )
    return example
