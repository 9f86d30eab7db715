"""How a model's frames and outputs look on the wire: the bridge between the protocol and
the pool (features per frame, wire dtype, output rows, the ``ready`` description)."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeseq.client.protocol import OutputSpec, outputs_text
from edgeseq.errors import InputError

if TYPE_CHECKING:
    from edgeseq.runtime._engine import Engine

__all__ = ["WireFormat"]


class WireFormat:
    """One model's frames as ``T × F`` wire values and its outputs as rows per frame (per
    completed window for a windowed model)."""

    def __init__(self, engine: Engine) -> None:
        spec = engine.frames
        if not spec.fixed:
            raise InputError(
                f"the model's frames input has symbolic per-frame axes {spec.trailing}; the "
                "wire protocol needs a fixed number of values per frame. Store a contract with "
                "fixed sizes (`edgeseq inspect MODEL --write-contract OUT.onnx`)."
            )
        plan = getattr(engine, "windows", None)
        # a windowed model takes raw samples (the pool keeps an unfinished window's samples)
        # and answers one row per completed window: none, one or several per message
        self.window_samples: int | None = plan.window if plan is not None else None
        self.trailing: tuple[int, ...] = spec.trailing_ints
        self.features = math.prod(self.trailing) if self.trailing else 1
        self.dtype = "int64" if spec.is_int else "float32"
        c = engine.contract
        self.window = c.model.chunk if plan is None else None
        self._outs = []  # (name, time axis of one stream's output or None)
        self.outputs: list[OutputSpec] = []
        for o in engine.data_outputs:
            b, t = o.batch_axis, o.time_axis
            shape = [
                d if isinstance(d, int) else None
                for ax, d in enumerate(o.shape)
                if ax not in (b, t)
            ]
            self.outputs.append(OutputSpec(o.name, shape, o.dtype, t is not None))
            local = None if t is None else t - (1 if b is not None and b < t else 0)
            self._outs.append((o.name, local))
        self._keys = {name: json.dumps(name) + ":" for name, _ in self._outs}  # '"name":'

    def to_model(self, arr: np.ndarray) -> tuple[np.ndarray, bool]:
        """Wire frames ``(T, F)`` as the pool takes them: one frame when ``T == 1`` (the
        pool's fast path), else a chunk ``(T, *per-frame shape)``; raw samples ``(T,)`` for
        a windowed model."""
        t = arr.shape[0]
        if self.window_samples is not None:
            return arr.reshape(t), False
        if t == 1:
            return arr.reshape(self.trailing), True
        return arr.reshape((t, *self.trailing)), False

    def rows(self, out: Any, single: bool) -> dict[str, np.ndarray]:
        """One stream's outputs as ``{name: rows}``: one row per frame; time-less outputs
        (a running classification) one row."""
        got = out if isinstance(out, dict) else {self._outs[0][0]: out}
        rows = {}
        for name, t in self._outs:
            arr = np.asarray(got[name])
            rows[name] = arr[None] if single or t is None else np.moveaxis(arr, t, 0)
        return rows

    def text(self, out: Any, single: bool, frames: int, seq: int, saved: int | None) -> str:
        """The ``outputs`` reply to one message: exactly ``protocol.outputs_text`` of its
        rows, built from ``repr`` of the rows (the same float formatting as JSON) into a
        fixed template — about a third of the cost. Non-finite or non-numeric rows take
        ``outputs_text`` itself."""
        rows = self.rows(out, single)
        parts = []
        for name, arr in rows.items():
            lists = arr.tolist()
            text = repr(lists)
            if arr.dtype.kind not in "fiu" or "n" in text:  # nan/inf, or bools: JSON's own
                return outputs_text(frames, {k: r.tolist() for k, r in rows.items()}, seq, saved)
            parts.append(self._keys[name] + text.replace(" ", ""))
        body = ",".join(parts)
        tail = "}" if saved is None else f',"saved":{saved}}}'
        return f'{{"type":"outputs","frames":{frames},"outputs":{{{body}}},"seq":{seq}{tail}'

    def describe(self) -> list[dict[str, Any]]:
        return [
            {"name": o.name, "shape": o.shape, "dtype": o.dtype, "time": o.time}
            for o in self.outputs
        ]
