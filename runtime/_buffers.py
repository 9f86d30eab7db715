"""Tensors kept on the device between calls: state buffers, IO bindings, ping-pong.

A :class:`StateSlot` holds the recurrent state of ``batch`` rows in two buffer sets.
The set ``cur`` holds the state; a call binds it as the state inputs and the other set
as the state outputs, then flips ``cur``. Nothing is copied to the host between calls
(on CUDA the state never leaves the GPU), and a call that fails leaves ``cur`` as it was.

A :class:`_Plan` holds everything else one call shape ``(batch, time)`` needs: the frames,
lengths and output buffers and two :class:`onnxruntime.IOBinding` objects, one per
parity, bound once. A steady stream of calls of one shape rebinds nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort

from edgeseq.contract import TensorSpec
from edgeseq.runtime._session import Device

if TYPE_CHECKING:
    from edgeseq.runtime._engine import Engine

__all__ = ["Buffer", "StateSlot", "row_view"]

_PLANS_PER_SLOT = 8  # distinct frame counts kept bound per batch size


class Buffer:
    """A preallocated tensor as an OrtValue on the device; ``host`` is a numpy view on CPU."""

    __slots__ = ("dtype", "host", "shape", "value")

    def __init__(self, shape: Sequence[int], dtype: Any, device: Device) -> None:
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.value = ort.OrtValue.ortvalue_from_shape_and_type(
            list(self.shape), self.dtype.type, device.memory, device.index
        )
        # on CPU the OrtValue's memory is this array: writes and reads need no copy
        self.host: np.ndarray | None = self.value.numpy() if device.memory == "cpu" else None

    def write(self, arr: np.ndarray) -> None:
        if self.host is not None:
            self.host[...] = arr
        else:
            self.value.update_inplace(np.ascontiguousarray(arr, dtype=self.dtype))

    def read(self) -> np.ndarray:
        """A host copy (the buffer is reused by the next call)."""
        return self.host.copy() if self.host is not None else self.value.numpy()

    def view(self) -> np.ndarray:
        """The host view on CPU (no copy), a host copy elsewhere."""
        return self.host if self.host is not None else self.value.numpy()


class _Plan:
    """Buffers and the two bindings for one call shape ``(batch, t_in, *frame shape)``."""

    __slots__ = ("bindings", "dynamic", "full", "lengths", "outputs", "single", "x")

    def __init__(self, engine: Engine, slot: StateSlot, key: tuple[int, ...]) -> None:
        dev, batch, session = engine.device, slot.batch, engine.session
        t_in = key[0]
        self.x = Buffer((batch, *key), engine.frames.dtype, dev)
        self.lengths = Buffer((batch,), np.int32, dev) if engine.lengths_name else None
        self.full = True  # lengths hold t_in for every row
        if self.lengths is not None:
            self.lengths.write(np.full((batch,), t_in, np.int32))
        self.outputs: list[Buffer | None] = []
        for spec in engine.data_outputs:
            shape = _resolve(spec.shape, spec.batch_axis, spec.time_axis, batch, t_in)
            self.outputs.append(Buffer(shape, spec.dtype, dev) if shape is not None else None)
        self.dynamic = any(b is None for b in self.outputs)
        # (batch, time=1) outputs of a single frame: the views step() returns, precomputed
        self.single: list[np.ndarray] | None = None
        if batch == 1 and t_in == 1 and not self.dynamic and dev.memory == "cpu":
            self.single = [
                row_view(b.host, s, 0, True)  # type: ignore[union-attr, arg-type]
                for b, s in zip(self.outputs, engine.data_outputs)
            ]
        self.bindings = []
        for parity in (0, 1):
            b = session.io_binding()
            b.bind_ortvalue_input(engine.frames.name, self.x.value)
            if self.lengths is not None:
                b.bind_ortvalue_input(engine.lengths_name, self.lengths.value)
            for name, value in engine.constant_values.items():
                b.bind_ortvalue_input(name, value)
            for pair, buf in zip(engine.pairs, slot.sets[parity]):
                b.bind_ortvalue_input(pair.input, buf.value)
            for spec, buf in zip(engine.data_outputs, self.outputs):
                if buf is None:
                    b.bind_output(spec.name, dev.memory, dev.index)
                else:
                    b.bind_ortvalue_output(spec.name, buf.value)
            for pair, buf in zip(engine.pairs, slot.sets[1 - parity]):
                b.bind_ortvalue_output(pair.output, buf.value)
            self.bindings.append(b)


def row_view(arr: np.ndarray, spec: TensorSpec, row: int, single: bool) -> np.ndarray:
    """Row ``row`` of a batched output, without its batch axis (and its time axis when
    ``single``), as a view: basic indexing, no copy."""
    idx: list[Any] = [slice(None)] * arr.ndim
    if spec.batch_axis is not None:
        idx[spec.batch_axis] = row
    if single and spec.time_axis is not None:
        idx[spec.time_axis] = 0
    return arr[tuple(idx)]


def _resolve(
    shape: Sequence[int | str], b_ax: int | None, t_ax: int | None, batch: int, t_in: int
) -> list[int] | None:
    """A concrete output shape, or None when a symbolic axis is neither batch nor time."""
    out = []
    for ax, d in enumerate(shape):
        if isinstance(d, int):
            out.append(d)
        elif ax == b_ax:
            out.append(batch)
        elif ax == t_ax:
            out.append(t_in)
        else:
            return None
    return out


class StateSlot:
    """The state (and left context) of ``batch`` rows, on the device, for one engine.

    With ``io_binding`` the state lives in two :class:`Buffer` sets (ping-pong); without,
    it is a list of numpy arrays passed to ``session.run``.
    """

    def __init__(self, engine: Engine, batch: int) -> None:
        self.engine = engine
        self.batch = batch
        self.cur = 0
        self.bound = engine.io_binding
        if self.bound:
            self.sets = tuple(
                [Buffer(engine.state_shape(p, batch), p.dtype, engine.device) for p in engine.pairs]
                for _ in (0, 1)
            )
        self.arrays: list[np.ndarray] = []  # the plain path's state
        self.context: np.ndarray | None = None  # (batch, N, ...) frames carried to the next call
        self._plans: OrderedDict[tuple[int, ...], _Plan] = OrderedDict()
        self.reset()

    # ------------------------------------------------------------------ state in and out
    def reset(self) -> None:
        """Every row back to the contract's initial state; context back to zeros."""
        self.load(self.engine.initial(self.batch))
        self.context = self.engine.initial_context(self.batch)

    def load(self, states: Sequence[np.ndarray]) -> None:
        """Make ``states`` (one array per pair, full batch) the current state."""
        if self.bound:
            for buf, arr in zip(self.sets[self.cur], states):
                buf.write(arr)
        else:
            self.arrays = [np.array(a, dtype=p.dtype) for a, p in zip(states, self.engine.pairs)]

    def read(self) -> list[np.ndarray]:
        """Host copies of the current state, one per pair."""
        if self.bound:
            return [buf.read() for buf in self.sets[self.cur]]
        return [a.copy() for a in self.arrays]

    def views(self) -> list[np.ndarray]:
        """The current state without copying where possible (valid until the next call)."""
        if self.bound:
            return [buf.view() for buf in self.sets[self.cur]]
        return self.arrays

    def save(self) -> tuple[list[np.ndarray], np.ndarray | None]:
        return self.read(), None if self.context is None else self.context.copy()

    def restore(self, saved: tuple[list[np.ndarray], np.ndarray | None]) -> None:
        self.load(saved[0])
        self.context = saved[1]

    def gather(self, store: Sequence[np.ndarray], rows: np.ndarray) -> None:
        """Load rows ``rows`` of a pool's capacity arrays (one per pair) as this slot's state."""
        pairs = self.engine.pairs
        if self.bound:
            for buf, cap, p in zip(self.sets[self.cur], store, pairs):
                if buf.host is not None:
                    np.take(cap, rows, axis=p.batch_axis, out=buf.host)
                else:
                    buf.write(np.take(cap, rows, axis=p.batch_axis))
        else:
            self.arrays = [np.take(cap, rows, axis=p.batch_axis) for cap, p in zip(store, pairs)]

    # ------------------------------------------------------------------ calls
    def plan(self, key: tuple[int, ...]) -> _Plan:
        """The bound plan for frames shaped ``(batch, *key)``, ``key = (t_in, *frame shape)``."""
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = _Plan(self.engine, self, key)
            if len(self._plans) > _PLANS_PER_SLOT:
                self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(key)
        return plan
