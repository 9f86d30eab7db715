"""ExportOptions: how a module is exported, the same for export, explain and the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeseq._options import one_place
from edgeseq.errors import ExportError
from edgeseq.exporters._onnx import Backend
from edgeseq.exporters.modes import ModeSpec, get_mode

__all__ = ["BACKENDS", "ExportOptions"]

BACKENDS = ("torchscript", "dynamo")


@dataclass(frozen=True)
class ExportOptions:
    """How :func:`~edgeseq.exporters.export` writes a streaming graph: the options that
    travel together from ``edgeseq export`` and :func:`~edgeseq.exporters.explain` /
    :func:`~edgeseq.exporters.export_model` to the export algorithm. Each of those takes
    them as one value (``options=ExportOptions(...)``) or as the keywords of the same
    names (not both for one field). Checked when made: a bad value raises
    :class:`~edgeseq.errors.ExportError` naming the field, what it must be and what it
    got; whether they fit the model (a chunk for a mode that takes any frames, a layer
    the mode cannot express) is checked when it is exported.

    Parameters
    ----------
    mode
        A registered mode (:data:`~edgeseq.exporters.MODES`: ``native``, ``unrolled``),
        or None: native, unless a layer cannot be expressed natively.
    chunk
        Frames per graph call of a fixed-chunk mode, an int >= 1 (None: the mode's).
    backend
        The torch.onnx exporter: ``torchscript`` (default) or ``dynamo``.
    offline
        Carry no state: every call is a whole sequence from the initial state.
    lengths
        Give the graph a ``lengths`` input ``(batch,)``: True, False, or None (the
        mode's choice, :attr:`~edgeseq.exporters.ModeSpec.default_lengths`).

    Examples
    --------
    >>> npu = ExportOptions(mode="unrolled", chunk=8)
    >>> print(explain(model, example, options=npu))
    >>> export(model, "model.onnx", example=example, options=npu)
    """

    mode: str | None = None
    chunk: int | None = None
    backend: Backend = "torchscript"
    offline: bool = False
    lengths: bool | None = None

    def __post_init__(self) -> None:
        if self.mode is not None:
            get_mode(self.mode)  # ExportError listing the registered modes
        chunk = self.chunk
        whole = isinstance(chunk, int) and not isinstance(chunk, bool)
        if chunk is not None and not (whole and chunk >= 1):
            raise ExportError(f"chunk must be a positive int (frames per call), got {chunk!r}")
        if self.backend not in BACKENDS:
            raise ExportError(f"backend must be one of {list(BACKENDS)}, got {self.backend!r}")
        if not isinstance(self.offline, bool):
            raise ExportError(f"offline must be True or False, got {self.offline!r}")
        if self.lengths is not None and not isinstance(self.lengths, bool):
            raise ExportError(
                f"lengths must be True, False or None (the mode's), got {self.lengths!r}"
            )

    def lengths_for(self, spec: ModeSpec) -> bool:
        """Whether the graph of mode ``spec`` takes a ``lengths`` input."""
        return spec.default_lengths if self.lengths is None else self.lengths

    @classmethod
    def given(cls, options: ExportOptions | None, **keywords: Any) -> ExportOptions:
        """``options``, or the one the old keywords make (not both for one field)."""
        return one_place(cls, options, keywords, ExportError)
