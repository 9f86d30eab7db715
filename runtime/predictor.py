"""StreamingPredictor: one stream through an exported model, state kept between calls."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeseq.contract import Contract, StatePair, TensorSpec
from edgeseq.errors import InputError, SnapshotError
from edgeseq.runtime._frames import FrameSpec
from edgeseq.runtime._session import ModelSource, graph_io, open_session

__all__ = ["Snapshot", "StreamingPredictor", "initial_state"]


def initial_state(pair: StatePair, batch: int = 1) -> np.ndarray:
    """The contract's initial value of one state, for ``batch`` rows."""
    shape = [batch if isinstance(d, str) else d for d in pair.shape]
    if pair.init == "zeros":
        return np.zeros(shape, dtype=pair.dtype)
    one = list(shape)
    one[pair.batch_axis] = 1
    row = np.asarray(pair.init, dtype=pair.dtype).reshape(one)
    return np.repeat(row, batch, axis=pair.batch_axis)


@dataclass
class Snapshot:
    """A copy of one stream's state; ``restore`` accepts it on a predictor of the same model."""

    contract_hash: str
    states: dict[str, np.ndarray]  # state input name -> array with batch 1
    frames_seen: int = 0
    context: np.ndarray | None = None  # left-context frames (third-party models)
    meta: dict[str, Any] = field(default_factory=dict)


class StreamingPredictor:
    """Stream frames of one sequence through an exported model, carrying state between calls.

    Parameters
    ----------
    model
        Path to an ``.onnx``/``.ort`` file, or its bytes. Its contract is read from the
        metadata (see :mod:`edgeseq.contract`).
    device
        ``"cpu"``, ``"cuda"``, or an onnxruntime provider name.
    threads
        onnxruntime intra-op threads (None: onnxruntime's default).
    contract
        Use this contract instead of the file's (e.g. one discovered for a third-party model).

    Examples
    --------
    >>> p = StreamingPredictor("model.onnx")
    >>> y = p.step(frame)        # frame [F] -> y [out]
    >>> ys = p.step(chunk)       # chunk [T, F] -> ys [T, out]
    """

    def __init__(
        self,
        model: ModelSource,
        device: str = "cpu",
        threads: int | None = None,
        *,
        contract: Contract | None = None,
    ) -> None:
        self.session = open_session(model, device, threads)
        if contract is None:
            meta = self.session.get_modelmeta().custom_metadata_map
            contract = Contract.from_metadata(meta, source=_describe(model))
        ins, outs = graph_io(self.session)
        contract.check_graph(ins, outs)
        self.contract = contract
        self.device = device
        self._frames = FrameSpec(contract)
        self._data_outputs: list[TensorSpec] = contract.data_outputs()
        self._output_names = [o.name for o in self._data_outputs] + contract.state_outputs
        self._chunk = contract.model.chunk
        prep = contract.preprocessing
        self._out_scale = (
            np.asarray(prep.out_std, np.float32) if prep.out_std is not None else None,
            np.asarray(prep.out_mean, np.float32) if prep.out_mean is not None else None,
        )
        self._hash = contract.hash()
        self._constants: dict[str, np.ndarray] = {}
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Start a new sequence: every state back to the contract's initial value."""
        self._state = {p.input: initial_state(p) for p in self.contract.states}
        self.frames_seen = 0

    @property
    def state(self) -> dict[str, np.ndarray]:
        """A copy of the current state, by state input name, each with batch 1."""
        return {k: v.copy() for k, v in self._state.items()}

    def set_state(self, states: Mapping[str, Any]) -> None:
        """Replace the state, e.g. with an encoder's final state; every pair must be given.

        ``states`` maps state input names to arrays of the contract's shape with batch 1
        (a leading batch axis of size 1 where the contract has it).
        """
        want = {p.input: initial_state(p) for p in self.contract.states}
        if set(states) != set(want):
            raise InputError(
                f"set_state needs exactly the states {sorted(want)}; got {sorted(states)}."
            )
        new = {}
        for name, ref in want.items():
            arr = np.asarray(states[name])
            if arr.shape != ref.shape or arr.dtype.kind != "f":
                raise InputError(
                    f"state {name!r}: expected float array of shape {ref.shape}, got "
                    f"{arr.dtype} {arr.shape}."
                )
            if not np.isfinite(arr).all():
                raise InputError(f"state {name!r} contains NaN or Inf; refusing to load it.")
            new[name] = np.array(arr, dtype=ref.dtype, copy=True)
        self._state = new

    def snapshot(self) -> Snapshot:
        """Copy the stream's state; :meth:`restore` rewinds to it (or copies it elsewhere)."""
        return Snapshot(self._hash, self.state, self.frames_seen)

    def restore(self, snapshot: Snapshot) -> None:
        """Continue from ``snapshot``; refuse one taken from another model."""
        if not isinstance(snapshot, Snapshot):
            raise SnapshotError(
                f"restore() expects a Snapshot from snapshot(), got {type(snapshot).__name__}."
            )
        if snapshot.contract_hash != self._hash:
            raise SnapshotError(
                f"snapshot belongs to a model with contract {snapshot.contract_hash}, this "
                f"predictor runs {self._hash}. Restore it on a predictor of the same model."
            )
        want = {p.input: initial_state(p).shape for p in self.contract.states}
        got = {k: v.shape for k, v in snapshot.states.items()}
        if want != got:
            raise SnapshotError(f"snapshot states {got} do not match the model's {want}.")
        self._state = {k: np.array(v, copy=True) for k, v in snapshot.states.items()}
        self.frames_seen = snapshot.frames_seen

    # ------------------------------------------------------------------ stepping
    def step(self, frames: Any) -> np.ndarray | dict[str, np.ndarray]:
        """Feed one frame ``[F]`` or a chunk ``[T, F]``; return this call's outputs.

        Outputs have no batch axis: ``[out]`` for one frame, ``[T, out]`` for a chunk. A
        model with several outputs returns a dict by output name. On any error the state
        is left exactly as it was.
        """
        chunk, single = self._frames.check(frames)
        outputs, new_state = self._run(chunk[None], self._state)  # batch of one
        self._state = new_state
        self.frames_seen += chunk.shape[0]
        result = {}
        for spec, arr in zip(self._data_outputs, outputs):
            arr = np.take(arr, 0, axis=spec.batch_axis) if spec.batch_axis is not None else arr
            t_ax = _shift(spec.time_axis, spec.batch_axis)
            if single and t_ax is not None:
                arr = np.take(arr, 0, axis=t_ax)
            result[spec.name] = arr
        first = self._data_outputs[0].name
        result[first] = self._postprocess(result[first])
        return result[first] if len(result) == 1 else result

    def _postprocess(self, y: np.ndarray) -> np.ndarray:
        std, mean = self._out_scale
        if std is not None:
            y = y * std
        if mean is not None:
            y = y + mean
        return y

    def _run(
        self, x: np.ndarray, state: Mapping[str, np.ndarray], lengths: np.ndarray | None = None
    ) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
        """Run ``x`` ``(batch, T, ...)`` from ``state``; split into fixed chunks if needed.

        Returns per-output arrays concatenated over time, and the new state (not stored).
        """
        batch, total = x.shape[0], x.shape[1]
        if lengths is None:
            lengths = np.full((batch,), total, dtype=np.int32)
        piece = self._chunk or total
        pieces: list[list[np.ndarray]] = []
        cur = dict(state)
        for start in range(0, total, piece):
            xs = x[:, start : start + piece]
            valid = np.clip(lengths - start, 0, xs.shape[1]).astype(np.int32)
            if self._chunk and xs.shape[1] < self._chunk:  # pad the tail of a fixed graph
                pad = np.zeros((batch, self._chunk - xs.shape[1], *xs.shape[2:]), xs.dtype)
                xs = np.concatenate([xs, pad], axis=1)
            feed = {self.contract.frames.name: xs, **cur, **self._constants}
            if self.contract.lengths is not None:
                feed[self.contract.lengths] = valid
            elif np.any(valid != xs.shape[1]):
                raise InputError(
                    "this model has no lengths input, so every row of a batched call must have "
                    "the same number of frames."
                )
            try:
                res = self.session.run(self._output_names, feed)
            except Exception as exc:
                raise InputError(
                    f"onnxruntime refused the call: {str(exc).splitlines()[0][:300]}"
                ) from None
            n = len(self._data_outputs)
            pieces.append(res[:n])
            cur = dict(zip(self.contract.state_inputs, res[n:]))
        outs = []
        for i, spec in enumerate(self._data_outputs):
            parts = [p[i] for p in pieces]
            if spec.time_axis is None:
                outs.append(parts[-1])
            else:
                cat = np.concatenate(parts, axis=spec.time_axis) if len(parts) > 1 else parts[0]
                outs.append(np.take(cat, np.arange(total), axis=spec.time_axis))
        return outs, cur

    def __repr__(self) -> str:
        m = self.contract.model
        return (
            f"StreamingPredictor(cell={m.cell}, mode={m.mode}, topology={m.topology}, "
            f"states={len(self.contract.states)}, device={self.device!r})"
        )


def _shift(axis: int | None, removed: int | None) -> int | None:
    """Index of ``axis`` after the axis ``removed`` was dropped."""
    if axis is None or removed is None or axis < removed:
        return axis
    return axis - 1


def _describe(model: ModelSource) -> str:
    return "model bytes" if isinstance(model, (bytes, bytearray, memoryview)) else str(model)
