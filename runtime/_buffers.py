"""Tensors kept on the device between calls: state buffers, IO bindings, ping-pong.

A :class:`StateSlot` holds the recurrent state of ``batch`` rows in two buffer sets.
The set ``cur`` holds the state; a call binds it as the state inputs and the other set
as the state outputs, then flips ``cur``. Nothing is copied to the host between calls
(on CUDA the state never leaves the GPU), and a call that fails leaves ``cur`` as it was.

A :class:`_Plan` holds everything else one call shape ``(batch, time)`` needs: the frames,
lengths and output buffers and two :class:`onnxruntime.IOBinding` objects, one per
parity, bound once. A steady stream of calls of one shape rebinds nothing. Calls of a
shape with no plan go through :mod:`._loose`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort

from edgeseq.contract import TensorSpec
from edgeseq.runtime._compact import Scratch, state_blocks
from edgeseq.runtime._loose import _Loose
from edgeseq.runtime._session import Device

if TYPE_CHECKING:
    from edgeseq.runtime._engine import Engine

__all__ = ["Buffer", "StateSlot", "row_view", "rows_first"]
# _Loose lives in ._loose; imported here for StateSlot (and by tests from here)

_PLANS_PER_SLOT = 8  # distinct frame counts kept bound per batch size


class Buffer:
    """A preallocated tensor as an OrtValue on the device; ``host`` is a numpy view on CPU."""

    __slots__ = ("dtype", "host", "shape", "value")

    def __init__(
        self, shape: Sequence[int], dtype: Any, device: Device, host: np.ndarray | None = None
    ) -> None:
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        if host is not None:  # CPU memory given (a slice of a block): the OrtValue shares it
            self.value = ort.OrtValue.ortvalue_from_numpy(host)
        else:
            self.value = ort.OrtValue.ortvalue_from_shape_and_type(
                list(self.shape), self.dtype.type, device.memory, device.index
            )
        # on CPU the OrtValue's memory is this array: writes and reads need no copy
        self.host: np.ndarray | None = None
        if device.memory == "cpu":
            self.host = host if host is not None else self.value.numpy()

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

    __slots__ = (
        "bindings",
        "dynamic",
        "full",
        "lengths",
        "many",
        "outputs",
        "rows",
        "runs",
        "single",
        "x",
    )

    def __init__(self, engine: Engine, slot: StateSlot, key: tuple[int, ...]) -> None:
        t_in = key[0]
        engine = engine.graph_for(t_in)  # single frames may run through a one-step graph
        dev, batch, session = engine.device, slot.batch, engine.session
        self.x = Buffer(engine.layout.graph_shape((batch, *key)), engine.frames.dtype, dev)
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
        # one row's chunk: views of the bound input as (t_in, ...) and flat (+ ones: x·1 is
        # finite only if every x is), and of the outputs without batch axis, so a chunk is
        # written straight into the graph's layout (one copy, no transpose first), checked
        # where the model reads it, and read back in place
        self.rows: tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]] | None = None
        host, at = self.x.host, engine.layout.batch_axis
        if (
            batch == 1
            and not self.dynamic
            and host is not None
            and engine.layout.time_axis is not None
        ):
            frames = host if at is None else host[(slice(None),) * at + (0,)]  # batch axis out
            outs = [
                row_view(b.host, s, 0, False)  # type: ignore[union-attr, arg-type]
                for b, s in zip(self.outputs, engine.data_outputs)
            ]
            flat = host.reshape(-1)  # every value the model reads, for the finiteness check
            self.rows = (frames, flat, np.ones_like(flat), outs)
        # one frame of every row (the many-streams hot path): the bound input as (batch,
        # *frame) and flat, the outputs as (batch, ...) without time axis
        self.many: tuple[np.ndarray, np.ndarray, list[np.ndarray]] | None = None
        specs = engine.data_outputs
        if (
            t_in == 1
            and not self.dynamic
            and host is not None
            and at is not None
            and all(s.batch_axis is not None for s in specs)
        ):
            flat = host.reshape(-1)  # batch and time lead: with one frame, rows are contiguous
            outs = [rows_first(b.host, s) for b, s in zip(self.outputs, specs)]  # type: ignore[union-attr, arg-type]
            self.many = (flat.reshape(batch, *key[1:]), flat, outs)
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
        self.runs = [engine.runner(b) for b in self.bindings]  # zero-argument calls, per parity


def row_view(arr: np.ndarray, spec: TensorSpec, row: int, single: bool) -> np.ndarray:
    """Row ``row`` of a batched output, without its batch axis (and its time axis when
    ``single``), as a view: basic indexing, no copy."""
    idx: list[Any] = [slice(None)] * arr.ndim
    if spec.batch_axis is not None:
        idx[spec.batch_axis] = row
    if single and spec.time_axis is not None:
        idx[spec.time_axis] = 0
    return arr[tuple(idx)]


def rows_first(arr: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """A view of a batched output as ``(batch, ...)``: its time axis (if any) at frame 0,
    its batch axis first."""
    idx: list[Any] = [slice(None)] * arr.ndim
    b, t = spec.batch_axis, spec.time_axis
    assert b is not None
    if t is not None:
        idx[t] = 0
        b -= t < b
    return np.moveaxis(arr[tuple(idx)], b, 0)


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

    The state lives in two :class:`Buffer` sets; ``cur`` says which holds it. A call reads
    that set and writes the other, then flips ``cur`` (ping-pong), only if it succeeded.
    """

    def __init__(self, engine: Engine, batch: int, scratch: Scratch | None = None) -> None:
        self.engine = engine
        self.batch = batch
        self.cur = 0
        blocks = state_blocks(engine, batch, scratch)  # CPU: each set's pairs in one block
        self.sets = tuple(
            [
                Buffer(engine.state_shape(p, batch), p.dtype, engine.device, host)
                for p, host in zip(engine.pairs, hosts or [None] * len(engine.pairs))
            ]
            for hosts in (blocks[0] if blocks else (None, None))
        )
        self.context: np.ndarray | None = None  # (batch, N, ...) frames carried to the next call
        self._plans: dict[tuple[int, ...], _Plan] = {}
        self._uses: dict[tuple[int, ...], int] = {}  # calls per frames shape
        self._loose: dict[int, _Loose] = {}  # by id of the graph's engine (main or one-step)
        self.row_views = blocks[1] if blocks else None  # rows-first views: see _compact.py
        self.reset()

    # ------------------------------------------------------------------ state in and out
    def reset(self) -> None:
        """Every row back to the contract's initial state; context back to zeros."""
        self.load(self.engine.initial(self.batch))
        self.context = self.engine.initial_context(self.batch)

    def load(self, states: Sequence[np.ndarray]) -> None:
        """Make ``states`` (one array per pair, full batch) the current state."""
        for buf, arr in zip(self.sets[self.cur], states):
            buf.write(arr)

    def read(self) -> list[np.ndarray]:
        """Host copies of the current state, one per pair."""
        return [buf.read() for buf in self.sets[self.cur]]

    def views(self) -> list[np.ndarray]:
        """The current state without copying on CPU (valid until the next call)."""
        return [buf.view() for buf in self.sets[self.cur]]

    def save(self) -> tuple[list[np.ndarray], np.ndarray | None]:
        return self.read(), None if self.context is None else self.context.copy()

    def restore(self, saved: tuple[list[np.ndarray], np.ndarray | None]) -> None:
        self.load(saved[0])
        self.context = saved[1]

    def gather(self, store: Sequence[np.ndarray], rows: np.ndarray) -> None:
        """Load rows ``rows`` of a pool's capacity arrays (one per pair) as this slot's state."""
        for buf, cap, p in zip(self.sets[self.cur], store, self.engine.pairs):
            if buf.host is not None:
                np.take(cap, rows, axis=p.batch_axis, out=buf.host)
            else:
                buf.write(np.take(cap, rows, axis=p.batch_axis))

    # ------------------------------------------------------------------ calls
    def plan(self, key: tuple[int, ...], build: bool = False) -> _Plan | None:
        """The bound plan for frames shaped ``(batch, *key)``, ``key = (t_in, *frame shape)``.

        Building a plan costs a few loosely bound calls, so a shape gets one only once it
        recurs (or at once with ``build``), and takes the place of a planned shape only
        if it has been used more often: a stream of ever-new shapes never thrashes.
        """
        plan = self._plans.get(key)
        if plan is not None:
            self._uses[key] += 1
            return plan
        if not self.engine.budget.plannable(self.batch, key[0]):
            return None  # buffers this large are not kept between calls
        n = self._uses[key] = self._uses.get(key, 0) + 1
        if len(self._uses) > 64 * _PLANS_PER_SLOT:  # forget rare shapes
            self._uses = {k: v for k, v in self._uses.items() if k in self._plans}
        if len(self._plans) >= _PLANS_PER_SLOT:
            victim = min(self._plans, key=lambda k: self._uses.get(k, 0))
            if not build and n <= self._uses.get(victim, 0):
                return None
            del self._plans[victim]
        elif n < 2 and not build:
            return None
        plan = self._plans[key] = _Plan(self.engine, self, key)
        return plan

    def bound(self, key: tuple[int, ...]) -> _Plan | None:
        """The plan already built for ``key`` (counted as a use), or None; builds nothing."""
        plan = self._plans.get(key)
        if plan is not None:
            self._uses[key] += 1
        return plan

    def call(self, xs: np.ndarray, valid: np.ndarray | None) -> list[np.ndarray]:
        """One onnxruntime call on frames ``xs`` ``(batch, t_in, ...)``; returns host copies
        of the data outputs. Flips ``cur`` only when the call succeeded."""
        engine = self.engine.graph_for(xs.shape[1])
        plan = self.plan(xs.shape[1:])
        try:
            if plan is None:
                loose = self._loose.get(id(engine))
                if loose is None:
                    loose = self._loose[id(engine)] = _Loose(engine, self)
                big = engine.budget.oversized(*xs.shape[:2])  # then give the arena back
                outs = loose.call(
                    engine, xs, valid, self.cur, engine.budget.shrink if big else None
                )
            else:
                plan.x.write(engine.layout.to_graph(xs))
                if plan.lengths is not None:
                    if valid is not None:
                        plan.lengths.write(valid)
                        plan.full = False
                    elif not plan.full:
                        plan.lengths.write(np.full((self.batch,), xs.shape[1], np.int32))
                        plan.full = True
                plan.runs[self.cur]()
                got = plan.bindings[self.cur].get_outputs() if plan.dynamic else None
                outs = [
                    b.read() if b is not None else np.array(got[i].numpy(), copy=True)  # type: ignore[index]
                    for i, b in enumerate(plan.outputs)
                ]
        except Exception as exc:
            raise engine.refused(exc) from None
        self.cur ^= 1
        return outs
