"""The edgeseq exception hierarchy: one root, one line of docstring each.

Every message says what was expected, what was got, and what to do next.
Input errors also derive from :class:`ValueError` so generic callers can
catch them the usual way.
"""

from __future__ import annotations

__all__ = [
    "ContractError",
    "EdgeseqError",
    "ExportError",
    "InputError",
    "ModelLoadError",
    "ProtocolError",
    "ProviderError",
    "RemoteError",
    "RepositoryError",
    "SnapshotError",
    "StreamError",
    "VerificationError",
]


class EdgeseqError(Exception):
    """Root of every error edgeseq raises on purpose."""


class ContractError(EdgeseqError, ValueError):
    """The state contract is missing, malformed, or disagrees with the graph."""


class ModelLoadError(EdgeseqError, OSError):
    """A model file could not be read or parsed by onnxruntime."""


class InputError(EdgeseqError, ValueError):
    """Frames or other call arguments have the wrong rank, size, dtype or values."""


class StreamError(EdgeseqError, KeyError):
    """A stream id is unknown or closed, or a pool is full."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class SnapshotError(EdgeseqError, ValueError):
    """A snapshot is corrupt or belongs to another model."""


class ProviderError(EdgeseqError, RuntimeError):
    """The requested onnxruntime execution provider is not available."""


class ExportError(EdgeseqError, RuntimeError):
    """A model cannot be exported as asked (e.g. it cannot stream)."""


class VerificationError(EdgeseqError, AssertionError):
    """ONNX outputs differ from PyTorch beyond tolerance, or shapes mismatch."""


class ProtocolError(EdgeseqError, ValueError):
    """A message breaks the ``edgeseq serve`` wire protocol (see docs/protocol.md)."""

    def __init__(self, message: str, reason: str = "bad_json") -> None:
        super().__init__(message)
        self.reason = reason  # a key of edgeseq.client.protocol.ERROR_REASONS


class RemoteError(EdgeseqError, RuntimeError):
    """An ``edgeseq serve`` server refused a request, or the connection to it was lost."""

    def __init__(self, message: str, status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status of a refused handshake, if any
        self.reason = reason  # the server's error reason (protocol.ERROR_REASONS), if any


class RepositoryError(EdgeseqError, ValueError):
    """A model repository (Triton's) is malformed or disagrees with the model it serves."""
