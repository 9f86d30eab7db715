"""LoadOptions: how a model is loaded, the same for a predictor, a pool and their engine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from edgeseq._options import one_place
from edgeseq.contract import Contract
from edgeseq.errors import InputError
from edgeseq.runtime._discovery import StateSpec
from edgeseq.runtime._session import parse_device

__all__ = ["LoadOptions"]


def _count(value: Any, least: int) -> bool:
    """An int (not a bool) of at least ``least``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


@dataclass(frozen=True, eq=False)
class LoadOptions:
    """How :class:`~edgeseq.runtime.StreamingPredictor` and
    :class:`~edgeseq.runtime.StreamPool` load a model: the options both take, as one
    value (``options=LoadOptions(...)``) or as the keywords of the same names (not both
    for one field). Checked when made: a bad value raises an edgeseq error naming the
    field, what it must be and what it got (:class:`~edgeseq.errors.ProviderError` for
    a device this onnxruntime lacks, :class:`~edgeseq.errors.InputError` otherwise).
    Whether a value fits the model (a window the contract disagrees with, a constant the
    graph lacks) is checked when the model loads. Compared by identity: ``constants``
    hold arrays.

    Parameters
    ----------
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, or an onnxruntime provider name.
    threads
        onnxruntime intra-op threads, an int >= 1 (None: onnxruntime's default).
    contract
        Use this :class:`~edgeseq.contract.Contract` instead of the file's.
    state
        Third-party models: ``{state input name: state output name}`` (or a
        :class:`~edgeseq.contract.StatePair` as the value). Starts from zeros.
    constants
        ``{input name: array}`` fed unchanged on every call, e.g. a sample rate (kept as
        a read-only copy of the mapping).
    context
        Left context, an int >= 0 of frames: the last ``context`` input frames of each
        call are prepended to the next (zeros before the first). None: the contract's.
    window
        New samples the model takes per call, an int >= 1 (e.g. 512 for Silero VAD at
        16 kHz); see :class:`~edgeseq.runtime.StreamingPredictor`. None: the contract's.

    Examples
    --------
    >>> vad = LoadOptions(constants={"sr": np.array(16000)}, context=64, window=512)
    >>> one = StreamingPredictor("silero_vad.onnx", options=vad)
    >>> many = StreamPool("silero_vad.onnx", max_streams=64, options=vad)
    """

    device: str = "cpu"
    threads: int | None = None
    contract: Contract | None = None
    state: StateSpec | None = None
    constants: Mapping[str, Any] | None = None
    context: int | None = None
    window: int | None = None

    def __post_init__(self) -> None:
        parse_device(self.device)  # ProviderError: not a name, or not in this build
        for name, least, what in (
            ("threads", 1, "a positive int (intra-op threads) or None (onnxruntime's default)"),
            ("context", 0, "a non-negative int of frames or None (the contract's)"),
            ("window", 1, "a positive int of samples or None (the contract's)"),
        ):
            value = getattr(self, name)
            if value is not None and not _count(value, least):
                raise InputError(f"{name} must be {what}, got {value!r}.")
        if self.contract is not None and not isinstance(self.contract, Contract):
            raise InputError(
                f"contract must be an edgeseq Contract or None (the file's), got "
                f"{type(self.contract).__name__}. Read one with Contract.from_json(...)."
            )
        for name in ("state", "constants"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Mapping):
                raise InputError(
                    f"{name} must be a dict keyed by input name or None, got "
                    f"{type(value).__name__}."
                )
        if self.constants is not None:
            object.__setattr__(self, "constants", MappingProxyType(dict(self.constants)))

    @classmethod
    def given(cls, options: LoadOptions | None, **keywords: Any) -> LoadOptions:
        """``options``, or the one the old keywords make (not both for one field)."""
        return one_place(cls, options, keywords, InputError)
