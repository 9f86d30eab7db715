"""edgeseq: recurrent sequence models from PyTorch training to streaming edge inference.

The modules at the top of this package are the shared, torch-free core that a device
needs: :mod:`edgeseq.contract` (the state contract both sides agree on),
:mod:`edgeseq.errors`, :mod:`edgeseq.vocab` and :mod:`edgeseq.table`. They import only
each other and the standard library (plus numpy).

Above the core, imports run one way (``tests/test_layout.py`` enforces it):

- :mod:`edgeseq.runtime` — the device side: ``StreamingPredictor``, ``StreamPool`` (numpy,
  onnxruntime only). Imports the core.
- :mod:`edgeseq.train` — the model family, training loop, data loaders, checkpoints and
  the demo (needs ``edgeseq[torch]``). Imports the core.
- :mod:`edgeseq.exporters` — PyTorch -> streaming ONNX (needs ``edgeseq[torch]``).
  Imports the core, the runtime and the training side.
- :mod:`edgeseq.bench` — the benchmark suite; :mod:`edgeseq.cli` — the command line.
  They sit on top and may import everything below.
"""

from __future__ import annotations

from edgeseq.errors import (
    ContractError,
    EdgeseqError,
    ExportError,
    InputError,
    ModelLoadError,
    ProtocolError,
    ProviderError,
    RemoteError,
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
    "ProtocolError",
    "ProviderError",
    "RemoteError",
    "SnapshotError",
    "StreamError",
    "VerificationError",
    "__version__",
]
