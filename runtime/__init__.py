"""The device side of edgeseq: numpy + onnxruntime only, never torch.

``StreamingPredictor`` streams one sequence through an exported model and keeps its
state between calls.
"""

from __future__ import annotations

from edgeseq.contract import Contract
from edgeseq.runtime._session import resolve_providers
from edgeseq.runtime.predictor import Snapshot, StreamingPredictor, initial_state

__all__ = [
    "Contract",
    "Snapshot",
    "StreamingPredictor",
    "initial_state",
    "resolve_providers",
]
