"""The per-call logic every front shares: one model, any batch of rows, any frame count.

:class:`Engine` loads a model, settles its contract (the file's, a given one, named state
pairs, or discovered), and runs ``(batch, time, ...)`` frames from a :class:`StateSlot`:
fixed-size chunks for unrolled graphs, valid frame counts through the ``lengths`` input,
left context prepended, outputs trimmed back to the frames given. ``StreamingPredictor``
runs it with one row whose state stays on the device; ``StreamPool`` gathers many
streams' rows into a slot, runs once, and scatters them back.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

from edgeseq.contract import GraphIO, StatePair, TensorSpec
from edgeseq.errors import ContractError, InputError
from edgeseq.runtime._budget import CallBudget
from edgeseq.runtime._buffers import StateSlot, row_view
from edgeseq.runtime._compact import Scratch
from edgeseq.runtime._context import check_context, settle_context
from edgeseq.runtime._declared import check_rate_constant, constant_values
from edgeseq.runtime._frames import FrameSpec
from edgeseq.runtime._options import LoadOptions
from edgeseq.runtime._session import ModelSource, graph_io, open_session, parse_device
from edgeseq.runtime._steps import load_step_graph, plan_calls
from edgeseq.runtime._window import GraphLayout, WindowPlan, check_cuts, plan_windows
from edgeseq.runtime.discover import resolve_contract, session_prober

__all__ = ["DiscoveryWarning", "Engine", "initial_state"]

Outputs = np.ndarray | dict[str, np.ndarray]


class DiscoveryWarning(UserWarning):
    """A model without a contract runs with state pairs edgeseq discovered by shape."""


def initial_state(pair: StatePair, batch: int = 1) -> np.ndarray:
    """The contract's initial value of one state, for ``batch`` rows."""
    shape = [batch if isinstance(d, str) else d for d in pair.shape]
    if pair.init == "zeros":
        return np.zeros(shape, dtype=pair.dtype)
    if pair.batch_axis is None:
        return np.asarray(pair.init, dtype=pair.dtype).reshape(shape)
    one = list(shape)
    one[pair.batch_axis] = 1
    row = np.asarray(pair.init, dtype=pair.dtype).reshape(one)
    return np.repeat(row, batch, axis=pair.batch_axis)


def _along(axis: int, start: int, stop: int) -> tuple[slice, ...]:
    return (slice(None),) * axis + (slice(start, stop),)


class Engine:
    """A loaded model plus everything a call needs, precomputed once.

    ``options`` are the :class:`~edgeseq.runtime.LoadOptions` of the predictor or pool
    that runs it (see :class:`~edgeseq.runtime.StreamingPredictor`).
    """

    def __init__(self, model: ModelSource, options: LoadOptions) -> None:
        self.options = o = options
        self.device = parse_device(o.device)
        self.session = open_session(model, self.device, o.threads)
        gin, gout = graph_io(self.session)
        source = "model bytes" if isinstance(model, (bytes, bytearray, memoryview)) else str(model)
        given = dict(o.constants or {})
        unknown = [k for k in given if k not in {g.name for g in gin}]
        if unknown:
            raise InputError(
                f"constants[{unknown[0]!r}]: expected one of the graph's inputs "
                f"{[g.name for g in gin]}, got {unknown[0]!r}. Check the input name."
            )
        values = constant_values(given, gin)  # checked before the probe feeds them
        self.contract, self.discovery = resolve_contract(
            self.session.get_modelmeta().custom_metadata_map,
            gin,
            gout,
            contract=o.contract,
            state=o.state,
            constants=values,
            source=source,
            prober=session_prober(self.session, gin),
        )
        self.contract.check_graph(gin, gout)
        if self.discovery is not None and self.discovery.discovered:
            warnings.warn(
                DiscoveryWarning(
                    f"{source} has no edgeseq contract; discovered by shape:\n"
                    f"{self.discovery.report()}\nStore it once with `edgeseq inspect MODEL "
                    "--write-contract OUT.onnx`, or name the pairs with state={...}."
                ),
                stacklevel=3,
            )
        c = self.contract
        self.frames = FrameSpec(c)
        self.layout = GraphLayout(c.frames)
        self.lengths_name = c.lengths
        self.pairs: list[StatePair] = list(c.states)
        self.views = c.state_views()  # the states as users see them (parts stacked)
        self.data_outputs: list[TensorSpec] = c.data_outputs()
        if not self.data_outputs:
            raise ContractError(
                "contract field 'outputs': expected at least one output that is not state, "
                f"got only state outputs {c.state_outputs}. Declare the model's data output."
            )
        self.constants = self._check_constants(values, gin)
        check_rate_constant(c.model.extra.get("rate"), self.constants)
        self.constant_values = {
            k: ort.OrtValue.ortvalue_from_numpy(v, self.device.memory, self.device.index)
            for k, v in self.constants.items()
        }
        self.context = settle_context(c, self.frames, o.context)
        self.chunk = c.model.chunk  # frames per call of a fixed-length graph, context included
        self.windows: WindowPlan | None = plan_windows(c, self.frames, self.context, o.window)
        if self.windows is not None:
            self.context = self.windows.context
            if self.windows.framed:  # the caller streams raw samples; frames are cut from them
                self.frames = FrameSpec(c, trailing=())
            else:
                self.chunk = self.windows.size
        elif self.discovery is not None and self.discovery.probe is not None:
            probe = self.discovery.probe
            check_cuts(probe, self.pairs, self.data_outputs, self.context, self.initial(1))
        check_context(self, gin, self.discovery.probe if self.discovery is not None else None)
        self.step_frames = (self.chunk - self.context) if self.chunk else None
        if c.frames.time_axis is None and not (self.windows and self.windows.framed):
            self.step_frames = 1  # the graph takes one frame per call
        # outputs of graphs that take a fixed window or one frame per call: one per call
        self.per_call = self.windows is not None or c.frames.time_axis is None
        self.result_specs = [self._result_spec(o) for o in self.data_outputs]
        if self.step_frames is not None and self.step_frames < 1:
            raise InputError(
                f"context={self.context} leaves no room for new frames in this graph's fixed "
                f"{self.chunk} frames per call; expected context < {self.chunk}."
            )
        self.budget = CallBudget(self)  # the memory one call may take: see _budget.py
        # calls shorter than a fixed chunk run through the one-step graph beside it, if any
        self.step: Engine | None = load_step_graph(
            self, model, lambda path: Engine(path, _step_options(o))
        )
        prep = c.preprocessing
        self.out_std = np.asarray(prep.out_std, np.float32) if prep.out_std is not None else None
        self.out_mean = np.asarray(prep.out_mean, np.float32) if prep.out_mean is not None else None

    # ------------------------------------------------------------------ setup checks
    def _check_constants(self, given: dict[str, Any], gin: Sequence[GraphIO]) -> dict:
        graph = {g.name: g for g in gin}
        declared = self.contract.constants
        for name in given:
            if name not in declared:
                raise InputError(
                    f"constants[{name!r}]: expected one of this model's constant inputs "
                    f"{declared}, got {name!r}. Remove it, or check the input name."
                )
        missing = [n for n in declared if n not in given]
        if missing:
            want = ", ".join(f"{n!r}: {graph[n].dtype} {graph[n].shape}" for n in missing)
            raise InputError(
                f"the model needs a value for {want} on every call; expected constants="
                f"{{{', '.join(repr(n) for n in missing)}: value}}, got none."
            )
        return given

    # ------------------------------------------------------------------ state
    def state_shape(self, pair: StatePair, batch: int) -> list[int]:
        return [batch if isinstance(d, str) else d for d in pair.shape]

    def initial(self, batch: int) -> list[np.ndarray]:
        return [initial_state(p, batch) for p in self.pairs]

    def initial_context(self, batch: int) -> np.ndarray | None:
        if not self.context:
            return None
        return np.zeros((batch, self.context, *self.frames.trailing_ints), self.frames.dtype)

    def slot(self, batch: int, scratch: Scratch | None = None) -> StateSlot:
        """Fresh state (initial values) for ``batch`` rows (in ``scratch``: see _compact.py)."""
        return StateSlot(self, batch, scratch)

    # ------------------------------------------------------------------ calls
    @functools.cached_property
    def hash(self) -> str:
        """The contract's digest, computed on first use (snapshots only)."""
        return self.contract.hash()

    def run(self, x: np.ndarray, lengths: np.ndarray | None, slot: StateSlot) -> list[np.ndarray]:
        """Run checked frames ``x`` ``(batch, T, ...)`` from ``slot``'s state and advance it.

        ``lengths`` ``(batch,)`` are the valid frames of each row (None: all ``T``). Returns
        the data outputs, batched, time axes trimmed to ``T``. If anything fails the slot
        is left exactly as it was. Fixed-chunk graphs run chunk by chunk; other long inputs
        run in pieces within the call budget (:mod:`._budget`), with the same outputs.
        """
        if self.windows is not None and self.windows.framed:
            return self._run_framed(x, slot)
        total = x.shape[1]
        if lengths is not None and self.lengths_name is None and np.any(lengths != total):
            raise InputError(
                "this model has no lengths input, so every row of a batched call must have "
                f"the same number of frames; got {sorted(set(lengths.tolist()))}."
            )
        calls = plan_calls(
            total,
            self.step_frames,
            self.step is not None,
            self.lengths_name is not None,
            offline=bool(self.chunk) and not self.contract.model.stateful,
        )
        calls = self.budget.bound(calls, len(x))  # long inputs: pieces within the budget
        backup = slot.save() if len(calls) > 1 else None
        n_ctx, ctx = self.context, slot.context
        pieces: list[tuple[list[np.ndarray], int, int, int]] = []
        try:
            for start, n, one_step in calls:
                xs = x[:, start : start + n]
                valid = None if lengths is None else np.clip(lengths - start, 0, n).astype(np.int32)
                if n_ctx:
                    xs = np.concatenate([ctx, xs], axis=1)  # (batch, N + n, ...)
                    ctx = _last_frames(xs, n if valid is None else valid, n_ctx)
                    valid = None if valid is None else valid + n_ctx
                if self.chunk and not one_step and xs.shape[1] < self.chunk:  # pad the tail
                    pad = np.zeros((xs.shape[0], self.chunk - xs.shape[1], *xs.shape[2:]), xs.dtype)
                    valid = np.full(len(xs), xs.shape[1], np.int32) if valid is None else valid
                    xs = np.concatenate([xs, pad], axis=1)
                pieces.append((slot.call(xs, valid), start, n, xs.shape[1]))
        except BaseException:
            if backup is not None:
                slot.restore(backup)
            raise
        slot.context = ctx
        return self._assemble(pieces, lengths)

    def graph_for(self, frames: int) -> Engine:
        """The engine whose graph runs calls of ``frames`` frames: the one-step graph for
        single frames when one is loaded beside a fixed chunk, else this one."""
        return self.step if frames == 1 and self.step is not None else self

    def _run_framed(self, x: np.ndarray, slot: StateSlot) -> list[np.ndarray]:
        """Samples ``(batch, k * window)`` -> ``k`` overlapping frames, run in one call (one
        call per frame if the graph has no time axis); outputs ``(…, k, …)``."""
        plan = self.windows
        assert plan is not None
        xs = np.concatenate([slot.context, x], axis=1) if plan.context else x
        frames = plan.frames(xs)  # (batch, k, context + window)
        step = frames.shape[1] if self.contract.frames.time_axis is not None else 1
        backup = slot.save() if frames.shape[1] > step else None
        pieces = []
        try:
            for start in range(0, frames.shape[1], step):
                piece = frames[:, start : start + step]
                pieces.append((slot.call(piece, None), start, piece.shape[1], piece.shape[1]))
        except BaseException:
            if backup is not None:
                slot.restore(backup)
            raise
        if plan.context:
            slot.context = xs[:, xs.shape[1] - plan.context :].copy()
        return self._assemble(pieces, None)

    def _result_spec(self, spec: TensorSpec) -> TensorSpec:
        """How an output comes back: one per call gains an axis of calls as its time axis."""
        if not self.per_call or spec.time_axis is not None:
            return spec
        at = 0 if spec.batch_axis is None else spec.batch_axis + 1
        shape = [*spec.shape[:at], "calls", *spec.shape[at:]]
        return TensorSpec(spec.name, shape, spec.dtype, spec.batch_axis, at)

    def empty(self) -> Outputs:
        """What a windowed call that completes no window returns: zero windows per output."""
        result = {}
        for spec in self.result_specs:
            shape = [
                0 if i == spec.time_axis else (d if isinstance(d, int) else 0)
                for i, d in enumerate(spec.shape)
                if i != spec.batch_axis
            ]
            result[spec.name] = np.zeros(shape, spec.dtype)
        first = self.result_specs[0].name
        return result[first] if len(result) == 1 else result

    def runner(self, binding: ort.IOBinding) -> Callable[[], None]:
        """A zero-argument call running ``binding``: the per-frame hot path.

        onnxruntime's Python ``run_with_iobinding`` adds only WebGPU graph-capture checks
        around the C++ call; skipping the wrapper saves about a microsecond per call.
        """
        core, raw = getattr(self.session, "_sess", None), getattr(binding, "_iobinding", None)
        webgpu = "WebGpuExecutionProvider" in self.session.get_providers()
        if raw is not None and hasattr(core, "run_with_iobinding") and not webgpu:
            return functools.partial(core.run_with_iobinding, raw, None)  # type: ignore[union-attr]
        return functools.partial(self.session.run_with_iobinding, binding)

    @staticmethod
    def refused(exc: BaseException) -> InputError:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        return InputError(
            f"onnxruntime refused the call ({first}); expected inputs that match the model's "
            "contract. The state is unchanged. Check the frames and constants, or re-export."
        )

    def _assemble(
        self, pieces: list[tuple[list[np.ndarray], int, int, int]], lengths: np.ndarray | None
    ) -> list[np.ndarray]:
        """Join the calls' outputs ``(outputs, first frame, frames, frames fed)`` along time."""
        n_ctx = 0 if self.windows and self.windows.framed else self.context  # framed: inside
        result = []
        for i, spec in enumerate(self.data_outputs):
            t = spec.time_axis
            if t is None and self.per_call:  # one output per call, stacked
                at = self.result_specs[i].time_axis
                result.append(np.stack([outs[i] for outs, *_ in pieces], axis=at))
                continue
            if t is None:  # the output of the call that held each row's last frame
                out = pieces[-1][0][i]
                if lengths is not None and len(pieces) > 1 and spec.batch_axis is not None:
                    out = out.copy()
                    rows = np.moveaxis(out, spec.batch_axis, 0)
                    starts = np.array([p[1] for p in pieces])
                    for r, last in enumerate(np.searchsorted(starts, lengths - 1, "right") - 1):
                        rows[r] = np.moveaxis(pieces[last][0][i], spec.batch_axis, 0)[r]
                result.append(out)
                continue
            parts = []
            for outs, _, n, t_in in pieces:
                a = outs[i]
                if a.shape[t] == t_in and (n_ctx or t_in != n):  # drop context and padding
                    a = a[_along(t, n_ctx, n_ctx + n)]
                parts.append(a)
            result.append(parts[0] if len(parts) == 1 else np.concatenate(parts, axis=t))
        return result

    # ------------------------------------------------------------------ results
    def postprocess(self, y: np.ndarray) -> np.ndarray:
        if self.out_std is not None:
            y = y * self.out_std
        if self.out_mean is not None:
            y = y + self.out_mean
        return y

    def split(
        self, outs: list[np.ndarray], counts: np.ndarray, singles: Sequence[bool]
    ) -> list[Outputs]:
        """Every row's outputs, as :meth:`extract` gives them; one row-major copy when all
        rows are single frames of a one-output model (the many-streams hot path)."""
        spec = self.result_specs[0]
        if len(outs) == 1 and all(singles) and (spec.batch_axis, spec.time_axis) == (0, 1):
            ys = self.postprocess(outs[0][:, 0].copy())  # (batch, ...)
            return list(ys)  # row views of one fresh array: no row shares memory with another
        return [self.extract(outs, r, int(n), s) for r, (n, s) in enumerate(zip(counts, singles))]

    def extract(self, outs: list[np.ndarray], row: int, frames: int, single: bool) -> Outputs:
        """Row ``row``'s outputs without the batch axis, its first ``frames`` frames.

        One array if the model has one data output, else a dict by output name.
        """
        result = {}
        for spec, arr in zip(self.result_specs, outs):
            t = spec.time_axis
            if t is not None and not single and arr.shape[t] != frames:
                arr = arr[_along(t, 0, frames)]
            result[spec.name] = np.ascontiguousarray(row_view(arr, spec, row, single))
        first = self.data_outputs[0].name
        result[first] = self.postprocess(result[first])
        return result[first] if len(result) == 1 else result


def _step_options(options: LoadOptions) -> LoadOptions:
    """The one-step graph beside a fixed chunk: the device, threads and constants only
    (its contract, state and calls are its own)."""
    return LoadOptions(options.device, options.threads, constants=options.constants)


def _last_frames(xs: np.ndarray, valid: int | np.ndarray, n: int) -> np.ndarray:
    """The ``n`` frames before position ``n + valid`` of each row: next call's context."""
    if isinstance(valid, int) or np.all(valid == valid[0]):
        v = int(valid if isinstance(valid, int) else valid[0])
        return xs[:, v : v + n].copy()
    idx = valid[:, None] + np.arange(n)[None, :]  # (batch, n)
    return xs[np.arange(len(xs))[:, None], idx]
