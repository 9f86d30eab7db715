"""PyTorch -> streaming ONNX. Needs the ``torch`` extra: ``pip install 'edgeseq[torch]'``.

- :func:`export` makes any module with nn.RNN/LSTM/GRU layers, RNN cells stepped in a
  loop, causal convolutions or a ``forward(x, state) -> (y, state)`` signature a streaming
  model whose state pairs and facts are written into the file's contract (modes:
  :data:`MODES`; what streams and how: :data:`STYLES`).
- :func:`explain` says per layer how a model will stream, or why it cannot.
- :class:`ExportOptions` holds how (mode, chunk, backend, offline, lengths), as one value
  :func:`export`, :func:`explain` and :func:`export_model` share.
- :func:`export_model` does it for edgeseq's own ``SeqModel`` / ``Seq2Seq``.
- :func:`verify` compares the exported model, streamed, with PyTorch, on any of
  :data:`RUNTIMES` (onnxruntime, OpenVINO, tract, the ONNX reference evaluator).
- :func:`quantize` writes an int8 or fp16 copy with a size/latency/accuracy report.
- :func:`to_ort` writes the ``.ort`` file and operator config for minimal builds.
"""

from __future__ import annotations

from edgeseq.exporters._options import ExportOptions
from edgeseq.exporters._report import TensorDiff, VerifyReport
from edgeseq.exporters._runtimes import RUNTIMES, RuntimeSpec
from edgeseq.exporters._styles import STYLES, Style, get_style, register_style
from edgeseq.exporters.explain import ExplainReport, LayerPlan, explain
from edgeseq.exporters.export import export, state_input_name, state_output_name
from edgeseq.exporters.modes import MODES, ModeSpec, get_mode, register_mode
from edgeseq.exporters.ort import OrtArtifacts, to_ort
from edgeseq.exporters.quantize import QuantReport, quantize
from edgeseq.exporters.seq import export_model
from edgeseq.exporters.verify import verify

__all__ = [
    "MODES",
    "RUNTIMES",
    "STYLES",
    "ExplainReport",
    "ExportOptions",
    "LayerPlan",
    "ModeSpec",
    "OrtArtifacts",
    "QuantReport",
    "RuntimeSpec",
    "Style",
    "TensorDiff",
    "VerifyReport",
    "explain",
    "export",
    "export_model",
    "get_mode",
    "get_style",
    "quantize",
    "register_mode",
    "register_style",
    "state_input_name",
    "state_output_name",
    "to_ort",
    "verify",
]
