"""The device side of edgeseq: numpy + onnxruntime only, never torch.

- :class:`StreamingPredictor` streams one sequence and keeps its state on the device.
- :class:`StreamPool` steps many independent streams of one model in batched calls, with
  a thread-safe micro-batching ``submit``.
- :class:`LoadOptions` holds how both load a model (device, threads, contract, state,
  constants, context, window), as one value they share.
- :class:`Snapshot` / :class:`PoolSnapshot` persist state as self-describing bytes/files.
- :func:`discover` / :class:`Discovery` run stateful models edgeseq did not export.
- :class:`EncoderDecoder` drives captioning and translation decoders; :class:`Sampling`
  holds how their and the predictor's ``generate`` pick each token.
- :class:`GreedyCTC` turns a transcriber's emissions into text as they arrive.
- :class:`TranslationMemory` recalls the output of the nearest stored source (TF-IDF +
  difflib, scikit-learn's scores without scikit-learn), e.g. example 06's encoder input.

:class:`StreamPool` is loaded on first use (PEP 562): with its ``submit`` front
(:mod:`concurrent.futures`, :mod:`logging`, :mod:`threading`) it cost a process that only
runs a :class:`StreamingPredictor` about 1.3 MB, so ``import edgeseq.runtime`` leaves it out;
:class:`TranslationMemory` (with :mod:`difflib`) loads on first use too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgeseq.contract import Contract, StatePair
from edgeseq.runtime._engine import DiscoveryWarning, initial_state
from edgeseq.runtime._options import LoadOptions
from edgeseq.runtime._session import parse_device, resolve_providers
from edgeseq.runtime.conditioned import EncoderDecoder
from edgeseq.runtime.ctc import GreedyCTC
from edgeseq.runtime.discover import Discovery, discover, named_contract
from edgeseq.runtime.generate import Sampling, encode_prompt, sample_token
from edgeseq.runtime.predictor import StreamingPredictor
from edgeseq.runtime.snapshot import PoolSnapshot, Snapshot, atomic_write

if TYPE_CHECKING:
    from edgeseq.runtime.memory import TranslationMemory
    from edgeseq.runtime.pool import StreamPool

__all__ = [
    "Contract",
    "Discovery",
    "DiscoveryWarning",
    "EncoderDecoder",
    "GreedyCTC",
    "LoadOptions",
    "PoolSnapshot",
    "Sampling",
    "Snapshot",
    "StatePair",
    "StreamPool",
    "StreamingPredictor",
    "TranslationMemory",
    "atomic_write",
    "discover",
    "encode_prompt",
    "initial_state",
    "named_contract",
    "parse_device",
    "resolve_providers",
    "sample_token",
]

# public names whose modules load on first access: name -> module
_LAZY = {"StreamPool": "edgeseq.runtime.pool", "TranslationMemory": "edgeseq.runtime.memory"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
