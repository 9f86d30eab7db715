"""PyTorch -> streaming ONNX. Needs the ``torch`` extra: ``pip install 'edgeseq[torch]'``.

``export`` makes any module with nn.RNN/LSTM/GRU layers a streaming model whose state
pairs and facts are written into the file's contract.
"""

from __future__ import annotations

from edgeseq.exporters.export import export, state_input_name, state_output_name
from edgeseq.exporters.modes import MODES, ModeSpec, get_mode, register_mode

__all__ = [
    "MODES",
    "ModeSpec",
    "export",
    "get_mode",
    "register_mode",
    "state_input_name",
    "state_output_name",
]
