"""The device side of edgeseq: numpy + onnxruntime only, never torch.

- :class:`StreamingPredictor` streams one sequence and keeps its state on the device.
- :class:`Snapshot` persists state as self-describing bytes/files.
- :func:`discover` / :class:`Discovery` run stateful models edgeseq did not export.
"""

from __future__ import annotations

from edgeseq.contract import Contract, StatePair
from edgeseq.runtime._engine import DiscoveryWarning, initial_state
from edgeseq.runtime._session import parse_device, resolve_providers
from edgeseq.runtime.discover import Discovery, discover, named_contract
from edgeseq.runtime.predictor import StreamingPredictor
from edgeseq.runtime.snapshot import Snapshot, atomic_write

__all__ = [
    "Contract",
    "Discovery",
    "DiscoveryWarning",
    "Snapshot",
    "StatePair",
    "StreamingPredictor",
    "atomic_write",
    "discover",
    "initial_state",
    "named_contract",
    "parse_device",
    "resolve_providers",
]
