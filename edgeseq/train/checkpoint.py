"""Checkpoints that never unpickle code: a dict of tensors, strings and numbers.

Layout, format version 1 (written by :func:`save_checkpoint` with :func:`torch.save`)::

    {"format": "edgeseq.train.checkpoint", "format_version": 1,
     "kind": "SeqModel" | "Seq2Seq",
     "config": "<JSON>",        # SeqConfig, or {"encoder": ..., "decoder": ...[, "attention"]}
     "state_dict": {name: tensor},
     "extra": "<JSON>",         # preprocessing mean/std, vocabulary, labels, data set, ...
     "edgeseq_version": "0.1.0", "torch_version": "2.x"}

Configs and ``extra`` are JSON *strings*, so the file loads with
``torch.load(path, weights_only=True)``: the restricted unpickler accepts only tensors and
plain containers, and any pickled class or function is refused before it can run.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from edgeseq import __version__
from edgeseq.atomic import atomic_write
from edgeseq.errors import InputError, ModelLoadError
from edgeseq.train.models import Seq2Seq, SeqConfig, SeqModel

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FORMAT = "edgeseq.train.checkpoint"
CHECKPOINT_VERSION = 1
_KINDS = ("SeqModel", "Seq2Seq")
_IMPORTABLE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")  # module.qualname


def save_checkpoint(
    path: str | os.PathLike[str], model: SeqModel | Seq2Seq, *, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` (config and weights) and ``extra`` to ``path``.

    Parameters
    ----------
    path : path-like
        Written atomically (a temporary file, then renamed).
    model : SeqModel or Seq2Seq
    extra : dict, optional
        JSON-able metadata: preprocessing mean/std, vocabulary list, labels, task, data
        set name. numpy arrays and scalars are stored as lists and numbers.

    Returns
    -------
    Path
    """
    if isinstance(model, Seq2Seq):
        config: dict[str, Any] = {
            "encoder": asdict(model.encoder.config),
            "decoder": asdict(model.decoder.config),
        }
        if model.attention is not None:  # absent in checkpoints of models without it
            config["attention"] = model.attention
    elif isinstance(model, SeqModel):
        config = asdict(model.config)
    else:
        raise InputError(f"expected a SeqModel or Seq2Seq, got {type(model).__name__}")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "kind": _kind_of(model),
        "config": _to_json(config, "the model config (SeqConfig.extra included)"),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": _to_json(extra or {}, "extra"),
        "edgeseq_version": __version__,
        "torch_version": str(torch.__version__),  # a TorchVersion would be a pickled class
    }
    # a crash mid-write never leaves a truncated checkpoint behind (and the next save
    # removes the temp file it left)
    return atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(
    path: str | os.PathLike[str], *, map_location: Any = "cpu"
) -> tuple[SeqModel | Seq2Seq, dict[str, Any]]:
    """Rebuild the model saved at ``path``, in eval mode, and return it with ``extra``.

    Raises
    ------
    ModelLoadError
        The file is missing, is not an edgeseq checkpoint, holds pickled code or objects,
        has another format version, or its weights do not fit its config.
    """
    payload = _read(Path(path), map_location)
    kind = payload["kind"]
    try:
        raw = json.loads(payload["config"])
        with torch.device("meta"):  # shapes only: no memory, however large the config
            _fits(path, kind, _build(kind, raw), payload["state_dict"])
        model = _build(kind, raw)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError, RuntimeError) as exc:
        raise ModelLoadError(
            f"{path}: the stored {kind} config does not build a model ({exc}); it may come "
            "from another edgeseq version: re-save it with this version's save_checkpoint"
        ) from None
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise ModelLoadError(
            f"{path}: the weights do not fit the stored {kind} config ({exc}); "
            "the file was probably edited or written by a different model class"
        ) from None
    return model.eval(), json.loads(payload["extra"])


def _build(kind: str, raw: Any) -> SeqModel | Seq2Seq:
    if kind == "Seq2Seq":
        return Seq2Seq(
            SeqConfig(**raw["encoder"]), SeqConfig(**raw["decoder"]), raw.get("attention")
        )
    return SeqModel(SeqConfig(**raw))


def _fits(path: str | os.PathLike[str], kind: str, skeleton: Any, weights: dict) -> None:
    """Refuse a config whose parameters are not the file's weights, before the real model
    (say ``hidden_size=10**9``: a 48 GB allocation) is built."""
    want = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    got = {k: tuple(v.shape) if hasattr(v, "shape") else None for k, v in weights.items()}
    if want != got:
        bad = sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k))[:3]
        size = sum(math.prod(s) for s in want.values())
        diff = ", ".join(f"{k}: {want.get(k)} vs {got.get(k)}" for k in bad)
        raise ModelLoadError(
            f"{path}: the weights do not fit the stored {kind} config, which asks for "
            f"{size:,} parameters (e.g. {diff}); "
            "expected a config and weights saved together by save_checkpoint. The file was "
            "edited or is corrupt: re-save it."
        )


def _pickled_globals(path: Path) -> list[str]:
    """What the file's pickle would import, read from its opcodes (nothing is unpickled)."""
    import io
    import pickletools
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    except (zipfile.BadZipFile, StopIteration, OSError, KeyError):
        data = path.read_bytes()  # the legacy format: pickles back to back
    names: list[str] = []
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(io.BytesIO(data)):
            if op.name in ("GLOBAL", "INST"):
                names.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:  # the rest is unreadable: what was found so far stands
        pass
    ours = ("torch.", "collections.OrderedDict")  # what save_checkpoint's files hold
    # only what an unpickler could import (module.qualname): noise read as a GLOBAL opcode
    # (". .JT") is not code, and the file is then just not a checkpoint
    return [n for n in dict.fromkeys(names) if _IMPORTABLE.fullmatch(n) and not n.startswith(ours)]


def _read(path: Path, map_location: Any) -> dict[str, Any]:
    if not path.is_file():
        raise ModelLoadError(
            f"no checkpoint at {path}: expected a file written by save_checkpoint; check the path"
        )
    try:
        with warnings.catch_warnings():  # noise may "declare" any pickle protocol
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            payload = torch.load(path, weights_only=True, map_location=map_location)
    except Exception as exc:  # random bytes raise anything from IndexError to MemoryError
        # refused or unreadable: name what its pickle would import (found in the opcodes,
        # whatever torch's message says)
        refused = _pickled_globals(path)
        if refused:
            raise ModelLoadError(
                f"{path} contains pickled code or objects ({', '.join(refused[:3])}); edgeseq "
                "checkpoints hold only tensors, numbers and JSON text, so it refuses to "
                "unpickle it. If you trust the file, load it with torch.load(weights_only="
                "False) and write it again with save_checkpoint"
            ) from None
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise _not_a_checkpoint(
            path, f"a file torch.load cannot read ({type(exc).__name__}: {first})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        got = (
            f"a dict without format={CHECKPOINT_FORMAT!r}"
            if isinstance(payload, dict)
            else (f"a {type(payload).__name__}")
        )
        raise _not_a_checkpoint(path, got)
    version = payload.get("format_version")
    if version != CHECKPOINT_VERSION:
        newer = isinstance(version, int) and version > CHECKPOINT_VERSION
        hint = "upgrade edgeseq" if newer else "re-save it with save_checkpoint"
        raise ModelLoadError(
            f"{path}: expected checkpoint format version {CHECKPOINT_VERSION}, got {version!r} "
            f"(written by edgeseq {payload.get('edgeseq_version', '?')}); {hint}"
        )
    if payload.get("kind") not in _KINDS:
        raise ModelLoadError(f"{path}: expected kind in {_KINDS}, got {payload.get('kind')!r}")
    for key, kind in (("config", str), ("extra", str), ("state_dict", dict)):
        if not isinstance(payload.get(key), kind):
            raise ModelLoadError(f"{path}: field {key!r} should be a {kind.__name__}; re-save it")
    return payload


def _not_a_checkpoint(path: Path, got: str) -> ModelLoadError:
    return ModelLoadError(
        f"{path} is not an edgeseq checkpoint: expected a dict with format="
        f"{CHECKPOINT_FORMAT!r} written by save_checkpoint, got {got}"
    )


def _kind_of(model: SeqModel | Seq2Seq) -> str:
    # a subclass is stored as its base: the checkpoint rebuilds the base from the config
    return "Seq2Seq" if isinstance(model, Seq2Seq) else "SeqModel"


def _to_json(value: Any, what: str) -> str:
    def plain(obj: Any) -> Any:
        if hasattr(obj, "tolist"):  # numpy arrays and scalars, tensors
            return obj.tolist()
        raise TypeError(f"{type(obj).__name__} is not JSON-able")

    try:
        return json.dumps(value, default=plain, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"{what} must be JSON-able (str, numbers, bools, None, lists, dicts; numpy arrays "
            f"become lists): {exc}; convert it before saving"
        ) from None
