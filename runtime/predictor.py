"""StreamingPredictor: one stream through an exported model, state kept between calls."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from edgeseq.contract import Contract
from edgeseq.errors import InputError
from edgeseq.runtime._engine import Engine, Outputs, initial_state
from edgeseq.runtime._frames import quiet_dot
from edgeseq.runtime._gate import Gate
from edgeseq.runtime._options import LoadOptions
from edgeseq.runtime._session import ModelSource
from edgeseq.runtime._views import join_states, split_states
from edgeseq.runtime._window import Windower
from edgeseq.runtime.discover import StateSpec
from edgeseq.runtime.generate import Sampling
from edgeseq.runtime.generate import generate as _generate
from edgeseq.runtime.snapshot import Snapshot, check_snapshot

__all__ = ["Snapshot", "StreamingPredictor", "initial_state"]


class StreamingPredictor:
    """Stream frames of one sequence through an ONNX model, carrying state between calls.

    State stays on the device as onnxruntime OrtValues bound with IO binding: each call
    reads one buffer set and writes the other (ping-pong), so nothing is copied to the
    host between calls.

    One predictor is ONE stream. It is thread-safe: calls from several threads run one
    at a time, each whole (no step is lost or applied twice, a snapshot never sees half a
    step), in the order the threads reach it. Threads that each have their own sequence
    need their own stream: a :class:`~edgeseq.runtime.StreamPool` (one model, many
    streams, batched) or one predictor per thread.

    Memory: a call's onnxruntime working memory is bounded whatever the input length
    (long inputs to edgeseq's stateful graphs run in internal pieces with the state
    carried, giving the same outputs; other graphs release onnxruntime's arena after an
    oversized call); the outputs returned are as long as the input.

    Parameters
    ----------
    model
        Path to an ``.onnx``/``.ort`` file, or its bytes. Its contract is read from the
        metadata (see :mod:`edgeseq.contract`); a model without one is run with named
        ``state`` pairs or, failing that, discovered pairs (a :class:`DiscoveryWarning`).
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, or an onnxruntime provider name.
    threads
        onnxruntime intra-op threads (None: onnxruntime's default).
    contract
        Use this contract instead of the file's.
    state
        Third-party models: ``{state input name: state output name}`` (or a
        :class:`~edgeseq.contract.StatePair` as the value). Starts from zeros.
    constants
        ``{input name: array}`` fed unchanged on every call, e.g. a sample rate.
    context
        Left context: the last ``context`` input frames of each call are prepended to the
        next call (zeros before the first), as streaming audio front-ends expect.
    window
        New samples the model takes per call (e.g. 512 for Silero VAD at 16 kHz). ``step``
        then accepts any number of samples, runs every complete window (with its left
        context) and keeps the rest for the next call; it returns one output per window
        run, ``[k, ...]`` (``k`` may be 0). A model whose frames hold ``window + context``
        samples each is fed frames cut from the samples (hop ``window``). Detected for
        graphs with a fixed chunk and no lengths input; stored by ``--write-contract``.
    buffer
        With a window: False refuses calls that are not whole windows instead of keeping
        the remainder.
    options
        ``device`` to ``window`` as one :class:`~edgeseq.runtime.LoadOptions` (to share
        with a :class:`~edgeseq.runtime.StreamPool`); then leave those keywords out.

    Examples
    --------
    >>> p = StreamingPredictor("model.onnx")
    >>> y = p.step(frame)        # frame [F] -> y [out]
    >>> ys = p.step(chunk)       # chunk [T, F] -> ys [T, out]
    >>> vad = StreamingPredictor("silero_vad.onnx", constants={"sr": np.array(16000)},
    ...                          context=64, window=512)
    >>> probs = vad.step(samples)  # samples [n] -> [n // 512 (+1), 1]: one per window
    """

    def __init__(
        self,
        model: ModelSource,
        device: str = "cpu",
        threads: int | None = None,
        *,
        contract: Contract | None = None,
        state: StateSpec | None = None,
        constants: Mapping[str, Any] | None = None,
        context: int | None = None,
        window: int | None = None,
        buffer: bool = True,
        options: LoadOptions | None = None,
    ) -> None:
        loading = LoadOptions.given(
            options, device=device, threads=threads, contract=contract, state=state,
            constants=constants, context=context, window=window,
        )  # fmt: skip
        self.engine = engine = Engine(model, loading)
        self.contract = engine.contract
        self.session = engine.session
        self.discovery = engine.discovery
        self.options = loading
        self.device = loading.device
        self._slot = engine.slot(1)
        self._frames = engine.frames
        self._names = [o.name for o in engine.data_outputs]
        self._scaled = engine.out_std is not None or engine.out_mean is not None
        # per-frame hot path: preallocated single-frame buffers, nothing built per call
        plan = engine.windows
        self._windower = Windower(plan.window, engine.frames.dtype) if plan else None
        self._buffer = buffer
        self._fast = (
            engine.device.memory == "cpu"
            and engine.layout.batch_axis in (0, 1)  # batch-first or time-major: one frame
            and engine.layout.time_axis in (0, 1)  # of one row is x[0, 0] either way
            and plan is None
            and engine.graph_for(1).chunk in (None, 1)  # any frames, or a one-step graph
            and not engine.context
            and engine.frames.fixed
            and not engine.frames.is_int
        )
        self._plan1: Any = None
        # chunks [T, F] of one call each (any frame count, no windows, no context): written
        # straight into a recurring shape's bound plan (see _step_chunk)
        self._chunks = (
            engine.device.memory == "cpu"
            and engine.layout.time_axis is not None
            and engine.step_frames is None
            and engine.lengths_name is None
            and plan is None
            and not engine.context
            and engine.frames.fixed
            and not engine.frames.is_int
        )
        self._gate = Gate()  # one call at a time: a call is never half-applied
        self.frames_seen = 0

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Start a new sequence: every state back to the contract's initial value."""
        with self._gate:
            self._slot.reset()
            if self._windower is not None:
                self._windower.reset()
            self.frames_seen = 0

    @property
    def state(self) -> dict[str, np.ndarray]:
        """A copy of the current state, by state input name, each with batch 1.

        A state the graph carries in parts (one pair per layer, as the recurrent op takes
        it) comes back whole under its own name, e.g. ``(layers, 1, hidden)``.
        """
        with self._gate:
            return join_states(self.engine.views, self._slot.read())

    def set_state(self, states: Mapping[str, Any]) -> None:
        """Replace the state, e.g. with an encoder's final state; every state must be given.

        ``states`` maps state names (as :attr:`state` has them) to arrays of the contract's
        shape with batch 1 (e.g. ``(layers, 1, hidden)``). Nothing changes if any is wrong.
        """
        new = split_states(self.engine.views, self.engine.pairs, states)
        with self._gate:
            self._slot.load(new)

    def snapshot(self) -> Snapshot:
        """Copy the stream's state; :meth:`restore` rewinds to it (or copies it elsewhere).

        ``snapshot().to_bytes()`` / ``.save(path)`` persist it; see :mod:`.snapshot`.
        """
        with self._gate:
            ctx = self._slot.context
            pending = None if self._windower is None else self._windower.pending.copy()
            return Snapshot(
                self.engine.hash,
                dict(zip(self.contract.state_inputs, self._slot.read())),
                self.frames_seen,
                None if ctx is None else ctx.copy(),
                pending=pending,
            )

    def restore(self, snapshot: Snapshot | bytes) -> None:
        """Continue from ``snapshot`` (or its bytes); refuse one of another model."""
        snap, states, ctx = check_snapshot(snapshot, self.engine)
        with self._gate:
            self._slot.load(states)
            self._slot.context = ctx
            if self._windower is not None:
                pend = snap.pending if snap.pending is not None else self._windower.pending[:0]
                self._windower.commit(np.array(pend, dtype=self._windower.pending.dtype))
            self.frames_seen = snap.frames_seen

    # ------------------------------------------------------------------ stepping
    def step(self, frames: Any) -> Outputs:
        """Feed one frame ``[F]`` or a chunk ``[T, F]``; return this call's outputs.

        Outputs have no batch axis: ``[out]`` for one frame, ``[T, out]`` for a chunk
        (outputs without a time axis keep their shape). A model with several outputs
        returns a dict by output name. On any error the state is left exactly as it was.
        """
        if self._fast:
            arr = self._frames.fast(frames)
            if arr is not None:
                gate = self._gate  # `with self._gate`, inlined: this is the per-frame path
                try:
                    gate.free.pop()
                except IndexError:
                    gate.wait_turn()
                try:
                    if self._plan1 is None:
                        self._plan1 = self._slot.plan((1, *arr.shape), build=True)
                        self._fast = self._plan1.single is not None  # outputs of known shape
                    if self._fast:
                        return self._step_one(arr)
                finally:
                    gate.free.append(True)
                    if gate.waiting:
                        gate.wake()
        if self._chunks:
            arr = self._frames.fast_chunk(frames)
            if arr is not None:
                with self._gate:
                    out = self._step_chunk(arr)
                if out is not None:
                    return out
        chunk, single = self._frames.check(frames)
        with self._gate:
            if self._windower is not None:
                return self._step_windows(chunk)
            outs = self.engine.run(chunk[None], None, self._slot)  # batch of one
            self.frames_seen += chunk.shape[0]
            return self.engine.extract(outs, 0, chunk.shape[0], single)

    def _step_windows(self, samples: np.ndarray) -> Outputs:
        """Run every window completed by ``samples`` (1-D); keep the rest for later."""
        windower = self._windower
        assert windower is not None
        if not self._buffer and len(samples) % windower.window:
            raise InputError(
                f"{self._frames.name!r}: expected whole windows of {windower.window} samples "
                f"(buffer=False), got {len(samples)}. Pass a multiple of {windower.window}, or "
                "buffer=True to keep the remainder for the next call."
            )
        ready, rest, k = windower.take(samples)
        outs = self.engine.run(ready[None], None, self._slot) if k else None
        windower.commit(rest)
        self.frames_seen += len(samples)
        if outs is None:
            return self.engine.empty()
        return self.engine.extract(outs, 0, k, False)

    @property
    def pending(self) -> int:
        """Samples waiting for their window to fill (0 without windows)."""
        return 0 if self._windower is None else len(self._windower.pending)

    def _step_one(self, frame: np.ndarray) -> Outputs:
        """One checked frame through preallocated, pre-bound buffers."""
        slot, plan = self._slot, self._plan1
        plan.x.host[0, 0] = frame
        try:
            plan.runs[slot.cur]()
        except Exception as exc:
            raise Engine.refused(exc) from None
        slot.cur ^= 1
        self.frames_seen += 1
        views = plan.single
        y = views[0].copy()
        if self._scaled:
            y = self.engine.postprocess(y)
        if len(views) == 1:
            return y
        return {self._names[0]: y, **{n: v.copy() for n, v in zip(self._names[1:], views[1:])}}

    def _step_chunk(self, chunk: np.ndarray) -> Outputs | None:
        """A chunk ``[T, ...]`` (dtype and shape checked) through the bound plan of its shape,
        in one graph call; None (nothing run) when the shape has no plan yet, or a value the
        model would read is not finite (the full check then names it)."""
        plan = self._slot.bound(chunk.shape)
        rows = None if plan is None else plan.rows
        if rows is None:
            return None
        frames, flat, ones, outs = rows
        frames[...] = chunk  # into the graph's layout: the one copy of the frames
        if not math.isfinite(quiet_dot(flat, ones)):  # where the model reads them; no warnings
            return None
        slot = self._slot
        try:
            plan.runs[slot.cur]()
        except Exception as exc:
            raise Engine.refused(exc) from None
        slot.cur ^= 1
        self.frames_seen += len(chunk)
        ys = [v.copy() for v in outs]
        if self._scaled:
            ys[0] = self.engine.postprocess(ys[0])
        return ys[0] if len(ys) == 1 else dict(zip(self._names, ys))

    def generate(
        self,
        prompt: str | Sequence[int] = "",
        max_tokens: int = 100,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        *,
        reset: bool = True,
        unknown: str = "error",
        sampling: Sampling | None = None,
    ) -> Iterator[str]:
        """Yield text pieces sampled from a token model, one per generated token.

        The prompt is encoded with the contract's vocabulary and fed in one call; each
        sampled id is fed back. Deterministic for a given ``seed``. A prompt character
        not in the vocabulary raises :class:`~edgeseq.errors.InputError` listing them,
        unless ``unknown="unk"`` (feed ``<unk>``) or ``"skip"`` (drop it). How tokens are
        picked is one :class:`~edgeseq.runtime.Sampling`, passed as ``sampling=`` or
        made of the keywords ``temperature`` to ``stop`` (its fields; not both at once).
        """
        picked = Sampling.given(sampling, temperature, top_k, top_p, seed, stop)
        return _generate(self, prompt, max_tokens, picked, reset=reset, unknown=unknown)

    def __repr__(self) -> str:
        m = self.contract.model
        return (
            f"StreamingPredictor(cell={m.cell}, mode={m.mode}, topology={m.topology}, "
            f"states={len(self.contract.states)}, device={self.device!r})"
        )
