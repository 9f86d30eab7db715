"""Triton Inference Server model repositories, generated from the state contract.

NVIDIA Triton's sequence batcher serves stateful models at scale: it keeps each
sequence's state ("implicit state") and batches sequences into one call. What it needs
from a model (state names, dims, dtypes, initial state, control inputs) is what the
contract already knows, so :func:`to_triton` writes the repository and checks it:

- backend ``onnxruntime``: the graph rewritten for implicit state (batch-first state,
  START resets it, READY for the ``direct`` strategy); NVIDIA's Triton container.
- backend ``python``: ``model.py`` steps an edgeseq ``StreamPool`` keyed by correlation id;
  runs on the ``tritonserver`` bundled in the ``nvidia-pytriton`` wheel (``LocalTriton``).
- :func:`check_repository` validates any repository with Triton's own schema
  (``tritonclient``) plus the checks the schema cannot do; :class:`SequenceBatcher`
  drives an onnxruntime-backend model exactly as Triton's sequence batcher would.
Needs the ``torch`` and ``triton`` extras; imports runtime and the core only besides onnx.
"""

from __future__ import annotations

from edgeseq.exporters.triton._check import ModelCheck, check_model, check_repository, load_config
from edgeseq.exporters.triton._config import TritonOptions
from edgeseq.exporters.triton._variant import init_input_name, init_variant, triton_variant
from edgeseq.exporters.triton.emulate import Request, SequenceBatcher
from edgeseq.exporters.triton.repository import TritonRepository, to_triton
from edgeseq.exporters.triton.server import LocalTriton, TritonServer, TritonUnavailable

__all__ = [
    "LocalTriton",
    "ModelCheck",
    "Request",
    "SequenceBatcher",
    "TritonOptions",
    "TritonRepository",
    "TritonServer",
    "TritonUnavailable",
    "check_model",
    "check_repository",
    "init_input_name",
    "init_variant",
    "load_config",
    "to_triton",
    "triton_variant",
]
