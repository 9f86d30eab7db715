"""PyTorch -> streaming ONNX. Needs the ``torch`` extra: ``pip install 'edgeseq[torch]'``.

- :func:`export` makes any module with nn.RNN/LSTM/GRU layers a streaming model whose
  state pairs and facts are written into the file's contract (modes: :data:`MODES`).
- :func:`export_model` does it for edgeseq's own ``SeqModel`` / ``Seq2Seq``.
- :func:`verify` compares the exported model, streamed, with PyTorch.
"""

from __future__ import annotations

from edgeseq.exporters._report import TensorDiff, VerifyReport
from edgeseq.exporters.export import export, state_input_name, state_output_name
from edgeseq.exporters.modes import MODES, ModeSpec, get_mode, register_mode
from edgeseq.exporters.seq import export_model
from edgeseq.exporters.verify import verify

__all__ = [
    "MODES",
    "ModeSpec",
    "TensorDiff",
    "VerifyReport",
    "export",
    "export_model",
    "get_mode",
    "register_mode",
    "state_input_name",
    "state_output_name",
    "verify",
]
