"""Calls of a shape that has no bound plan: the state stays on the device, the rest is per call.

:class:`._buffers.StateSlot` binds a recurring call shape once (a plan); every other call
goes through the :class:`_Loose` kept per graph here. It reads the slot's current state set
and writes the other, like a plan, so the slot's ping-pong and its "a failed call changes
nothing" hold for both paths.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort

if TYPE_CHECKING:
    from edgeseq.runtime._buffers import StateSlot
    from edgeseq.runtime._engine import Engine

__all__: list[str] = []  # internal: used through StateSlot.call


class _Loose:
    """Calls of shapes that have no plan (yet).

    On a GPU: two bindings whose state stays bound (it never leaves the device) while
    frames, lengths and data outputs are bound per call. On CPU, ``session.run`` over
    numpy views of the state buffers, which measured faster than per-call binding
    (about 35 vs 48 µs per call for chunks of varying length on a small LSTM).
    """

    session_run_on_cpu = True  # False binds per call on CPU too (the GPU path, for tests)

    def __init__(self, engine: Engine, slot: StateSlot) -> None:
        self.slot = slot
        self.plain = self.session_run_on_cpu and engine.device.memory == "cpu"
        self.names = [o.name for o in engine.data_outputs] + [p.output for p in engine.pairs]
        self.bindings = []
        for parity in (0, 1) if not self.plain else ():
            b = engine.session.io_binding()
            for name, value in engine.constant_values.items():
                b.bind_ortvalue_input(name, value)
            for pair, buf in zip(engine.pairs, slot.sets[parity]):
                b.bind_ortvalue_input(pair.input, buf.value)
            for spec in engine.data_outputs:  # first, so get_outputs() lists them first
                b.bind_output(spec.name, engine.device.memory, engine.device.index)
            for pair, buf in zip(engine.pairs, slot.sets[1 - parity]):
                b.bind_ortvalue_output(pair.output, buf.value)
            self.bindings.append(b)

    def call(
        self,
        engine: Engine,
        xs: np.ndarray,
        valid: np.ndarray | None,
        parity: int,
        options: ort.RunOptions | None = None,
    ) -> list:
        dev = engine.device
        if self.plain:  # session.run on numpy views of the state: measurably faster
            return self._run_cpu(engine, xs, valid, parity, options)
        b = self.bindings[parity]
        frames = np.ascontiguousarray(engine.layout.to_graph(xs))
        b.bind_ortvalue_input(
            engine.frames.name, ort.OrtValue.ortvalue_from_numpy(frames, dev.memory, dev.index)
        )
        if engine.lengths_name is not None:
            lengths = valid if valid is not None else np.full(len(xs), xs.shape[1], np.int32)
            value = ort.OrtValue.ortvalue_from_numpy(lengths, dev.memory, dev.index)
            b.bind_ortvalue_input(engine.lengths_name, value)
        for spec in engine.data_outputs:  # rebound unallocated (in place): sized by this call
            b.bind_output(spec.name, dev.memory, dev.index)
        engine.session.run_with_iobinding(b, options)
        n = len(engine.data_outputs)
        return [np.array(v.numpy(), copy=True) for v in b.get_outputs()[:n]]

    def _run_cpu(
        self,
        engine: Engine,
        xs: np.ndarray,
        valid: np.ndarray | None,
        parity: int,
        options: ort.RunOptions | None,
    ) -> list:
        """The same call through ``session.run``: on CPU the state buffers are numpy views,
        so nothing is converted on the way in; the new state is copied into the other set."""
        slot = self.slot
        feed: dict[str, Any] = {**engine.constants, engine.frames.name: engine.layout.to_graph(xs)}
        if engine.lengths_name is not None:
            full = np.full(len(xs), xs.shape[1], np.int32)
            feed[engine.lengths_name] = valid if valid is not None else full
        for pair, buf in zip(engine.pairs, slot.sets[parity]):
            feed[pair.input] = buf.host
        res = engine.session.run(self.names, feed, options)
        n = len(engine.data_outputs)
        for buf, arr in zip(slot.sets[1 - parity], res[n:]):
            buf.host[...] = arr  # type: ignore[index]
        return res[:n]
