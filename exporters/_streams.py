"""Run an exported model the two ways a device does, for verification.

- :func:`predictor_stream`: one stream through :class:`~edgeseq.runtime.StreamingPredictor`
  in calls of ``k`` frames (the user's path: state kept by the predictor).
- :func:`batched_stream`: several rows of different lengths in one call of any runtime
  (an onnxruntime session or a :class:`~edgeseq.exporters._runtimes.Runner`), state fed
  and read explicitly, ``lengths`` telling each row's valid frames, fixed-chunk
  graphs padded (an independent re-implementation of the predictor's loop).

Both return ``(outputs by name, final states by state input name)`` with the batch axis;
a state the graph carries in parts comes back whole, as the predictor's ``state`` has it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from edgeseq.contract import Contract, Preprocessing
from edgeseq.runtime import StreamingPredictor, initial_state
from edgeseq.runtime._views import join_states
from edgeseq.runtime._window import GraphLayout

if TYPE_CHECKING:
    from edgeseq.exporters._runtimes import Runner

__all__ = ["batched_stream", "model_space", "predictor_stream", "spans"]


def model_space(contract: Contract) -> Contract:
    """``contract`` without input/output scaling or fixed windows: verification compares
    model-space values, frame by frame as the graph takes them."""
    vocab = contract.preprocessing.vocab
    extra = {k: v for k, v in contract.model.extra.items() if k != "window"}
    model = dataclasses.replace(contract.model, extra=extra)
    return dataclasses.replace(contract, preprocessing=Preprocessing(vocab=vocab), model=model)


def spans(total: int, k: int | None) -> list[tuple[int, int]]:
    """``[start, stop)`` of each call when ``total`` frames are fed ``k`` at a time."""
    k = k or total
    return [(s, min(s + k, total)) for s in range(0, total, k)]


def _join(parts: list[np.ndarray], axis: int | None) -> np.ndarray:
    if axis is None:  # no time axis: a call returns its latest value
        return parts[-1]
    return np.concatenate(parts, axis=axis) if len(parts) > 1 else parts[0]


def predictor_stream(
    pred: StreamingPredictor,
    x: np.ndarray,
    k: int | None,
    memory: dict[str, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Feed ``x`` ``(1, T, ...)`` to ``pred`` from a reset (and ``memory``, batch 1, set as
    its per-stream memory), ``k`` frames per call (None: one)."""
    pred.reset()
    if memory:
        pred.set_state({**pred.state, **memory})
    contract = pred.contract
    outs = contract.data_outputs()
    parts: dict[str, list[np.ndarray]] = {o.name: [] for o in outs}
    for start, stop in spans(x.shape[1], k):
        res = pred.step(x[0, start:stop])  # always a chunk [n, ...]: the time axis stays
        res = res if isinstance(res, dict) else {outs[0].name: res}
        for o in outs:
            parts[o.name].append(res[o.name])
    result = {}
    for o in outs:
        t_ax = o.time_axis
        if t_ax is not None and o.batch_axis is not None and o.batch_axis < t_ax:
            t_ax -= 1
        joined = _join(parts[o.name], t_ax)
        result[o.name] = (
            np.expand_dims(joined, o.batch_axis) if o.batch_axis is not None else joined
        )
    return result, pred.state


def batched_stream(
    session: Runner,
    contract: Contract,
    x: np.ndarray,
    lengths: np.ndarray,
    k: int | None,
    memory: dict[str, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Feed rows of ``x`` ``(B, T, ...)`` (row ``r`` valid for ``lengths[r]`` frames) in calls
    of ``k`` frames through ``session`` (anything with ``run(names, feed)``), from ``memory``
    (by memory input name, batch ``B``) if given; return outputs and final states."""
    batch = x.shape[0]
    state = {p.input: initial_state(p, batch) for p in contract.states}
    state.update(memory or {})
    outs = contract.data_outputs()
    names = [o.name for o in outs] + contract.state_outputs
    parts: dict[str, list[np.ndarray]] = {o.name: [] for o in outs}
    graph_t = contract.model.chunk
    layout = GraphLayout(contract.frames)  # e.g. time-major, as the recurrent op takes it
    for start, stop in spans(x.shape[1], k):
        for p_start, p_stop in spans(stop - start, graph_t):  # a fixed graph takes `chunk` frames
            xs = x[:, start + p_start : start + p_stop]
            n = xs.shape[1]
            if graph_t and n < graph_t:
                pad = np.zeros((batch, graph_t - n, *xs.shape[2:]), xs.dtype)
                xs = np.concatenate([xs, pad], axis=1)
            feed = {contract.frames.name: np.ascontiguousarray(layout.to_graph(xs)), **state}
            if contract.lengths:
                valid = np.clip(lengths - (start + p_start), 0, n).astype(np.int32)
                feed[contract.lengths] = valid
            res = session.run(names, feed)
            for o, arr in zip(outs, res):
                if o.time_axis is not None:
                    arr = np.take(arr, np.arange(n), axis=o.time_axis)
                parts[o.name].append(arr)
            state = dict(zip(contract.state_inputs, res[len(outs) :]))
    finals = join_states(contract.state_views(), [state[p.input] for p in contract.states])
    return {o.name: _join(parts[o.name], o.time_axis) for o in outs}, finals
