"""edgeseq: recurrent sequence models from PyTorch training to streaming edge inference.

The top-level package imports neither torch nor onnx. Subpackages:

- :mod:`edgeseq.runtime` — the device side: ``StreamingPredictor``, ``StreamPool`` (numpy,
  onnxruntime only).
- :mod:`edgeseq.exporters` — PyTorch -> streaming ONNX (needs ``edgeseq[torch]``).
- :mod:`edgeseq.models`, :mod:`edgeseq.training` — the model family and its training loop.
- :mod:`edgeseq.contract` — the state contract shared by both sides.
"""

from __future__ import annotations

from edgeseq.errors import (
    ContractError,
    EdgeseqError,
    ExportError,
    InputError,
    ModelLoadError,
    ProviderError,
    SnapshotError,
    StreamError,
    VerificationError,
)

__version__ = "0.1.0"

__all__ = [
    "ContractError",
    "EdgeseqError",
    "ExportError",
    "InputError",
    "ModelLoadError",
    "ProviderError",
    "SnapshotError",
    "StreamError",
    "VerificationError",
    "__version__",
]
