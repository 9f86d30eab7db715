"""PyTorch -> streaming ONNX. Needs the ``torch`` extra: ``pip install 'edgeseq[torch]'``.

- :func:`export` makes any module with nn.RNN/LSTM/GRU layers a streaming model whose
  state pairs and facts are written into the file's contract (modes: :data:`MODES`).
- :func:`export_model` does it for edgeseq's own ``SeqModel`` / ``Seq2Seq``.
- :func:`verify` compares the exported model, streamed, with PyTorch, on any of
  :data:`RUNTIMES` (onnxruntime, OpenVINO, tract, the ONNX reference evaluator).
- :func:`quantize` writes an int8 or fp16 copy with a size/latency/accuracy report.
- :func:`to_ort` writes the ``.ort`` file and operator config for minimal builds.
"""

from __future__ import annotations

from edgeseq.exporters._report import TensorDiff, VerifyReport
from edgeseq.exporters._runtimes import RUNTIMES, RuntimeSpec
from edgeseq.exporters.export import export, state_input_name, state_output_name
from edgeseq.exporters.modes import MODES, ModeSpec, get_mode, register_mode
from edgeseq.exporters.ort import OrtArtifacts, to_ort
from edgeseq.exporters.quantize import QuantReport, quantize
from edgeseq.exporters.seq import export_model
from edgeseq.exporters.verify import verify

__all__ = [
    "MODES",
    "RUNTIMES",
    "ModeSpec",
    "OrtArtifacts",
    "QuantReport",
    "RuntimeSpec",
    "TensorDiff",
    "VerifyReport",
    "export",
    "export_model",
    "get_mode",
    "quantize",
    "register_mode",
    "state_input_name",
    "state_output_name",
    "to_ort",
    "verify",
]
