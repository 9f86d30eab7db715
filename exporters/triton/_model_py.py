"""Triton python-backend model: an edgeseq StreamPool keyed by Triton's correlation id.

Written as ``model.py`` into a repository by ``edgeseq triton --backend python``; runs
inside Triton's python-backend stub, whose Python environment needs edgeseq's device
install (numpy, onnxruntime). Triton's sequence batcher routes every request of a
sequence here with its correlation id and START/END flags:

- START opens a stream (a conditioned decoder's first state may come in the optional
  ``init.<state>`` inputs), END closes it after its last frames, releasing the state;
- the requests of one ``execute`` call (several sequences) step in ONE batched
  onnxruntime call; a bad request fails alone, the others still run;
- a stream idle longer than the sequence batcher's idle limit is evicted, as Triton
  forgets the sequence then.

Stateless models (offline, or a decoder's init model) run the rewritten graph directly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from edgeseq.errors import EdgeseqError, StreamError
from edgeseq.runtime import Snapshot, StreamPool

PREFIX = "edgeseq."


class TritonPythonModel:
    """The python backend's entry point (``initialize``, ``execute``, ``finalize``)."""

    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {
            k[len(PREFIX) :]: v.get("string_value", "")
            for k, v in config.get("parameters", {}).items()
            if k.startswith(PREFIX)
        }
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.outputs = [o["name"] for o in config["output"]]
        self.inputs = [i["name"] for i in config["input"]]
        self.stateful = params.get("stateful", "1") == "1"
        threads = int(params["threads"]) if params.get("threads") else None
        if not self.stateful:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads or 0
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            return
        self.pool = StreamPool(
            str(path),
            max_streams=int(params["max_streams"]),
            idle_timeout=float(params["idle_timeout_s"]),
            threads=threads,
        )
        c = self.pool.contract
        self.frames = c.frames
        self.specs = {o.name: o for o in c.data_outputs()}
        self.seeds = [(s, f"init.{s.input}") for s in c.states if f"init.{s.input}" in self.inputs]
        self.streams: dict[object, int] = {}  # correlation id -> pool stream id

    # ------------------------------------------------------------------ stateful
    def execute(self, requests: list) -> list:
        if not self.stateful:
            return self._stateless(requests)
        responses: list = [None] * len(requests)
        steps: dict[int, tuple[int, np.ndarray, bool]] = {}  # stream -> (request, frames, end)
        later = []
        for i, request in enumerate(requests):
            try:
                if _flag(request, "READY", default=True) is False:  # an idle direct slot
                    responses[i] = self._empty()
                    continue
                sid, frames, end = self._prepare(request)
            except EdgeseqError as exc:
                responses[i] = _error(exc)
                continue
            if sid in steps:  # never from Triton's batcher; kept correct anyway
                later.append(i)
                continue
            steps[sid] = (i, frames, end)
        self._step(steps, responses)
        for i in later:
            responses[i] = self.execute([requests[i]])[0]
        return responses

    def _prepare(self, request) -> tuple[int, np.ndarray, bool]:
        corr = request.correlation_id()
        x = pb_utils.get_input_tensor_by_name(request, self.frames.name).as_numpy()
        if x.shape[0] != 1:
            raise StreamError(
                f"sequence {corr!r}: expected one row per request (batch 1), got {x.shape[0]}. "
                "Send each sequence's frames in its own request."
            )
        if _flag(request, "START"):
            sid = self.streams.get(corr)
            if sid is None or sid not in self.pool:
                sid = self.streams[corr] = self.pool.open()
            else:
                self.pool.reset(sid)
            if self.seeds:
                self._seed(request, sid)
        else:
            sid = self.streams.get(corr)
            if sid is None or sid not in self.pool:
                self.streams.pop(corr, None)
                raise StreamError(
                    f"sequence {corr!r} has no open stream here (it ended, or was idle longer "
                    "than the sequence batcher's limit); expected START on its first request."
                )
        return sid, x[0], _flag(request, "END")

    def _seed(self, request, sid: int) -> None:
        states = {}
        for s, name in self.seeds:
            t = pb_utils.get_input_tensor_by_name(request, name)
            if t is None:
                raise StreamError(
                    f"a conditioned decoder needs {name!r} on START (the init model's output); "
                    "got none."
                )
            states[s.input] = np.moveaxis(t.as_numpy(), 0, s.batch_axis)  # batch 1 in place
        self.pool.restore(sid, Snapshot(self.pool.engine.hash, states, 0, None))

    def _step(self, steps: dict, responses: list) -> None:
        if not steps:
            return
        try:
            outs = self.pool.step({sid: frames for sid, (_, frames, _) in steps.items()})
        except EdgeseqError as exc:  # all-or-nothing: nothing ran; find the bad request
            if len(steps) == 1:
                responses[next(iter(steps.values()))[0]] = _error(exc)
            else:
                for sid, item in steps.items():
                    self._step({sid: item}, responses)
            return
        for sid, (i, _, end) in steps.items():
            responses[i] = self._response(outs[sid])
            if end:
                self._close(sid)

    def _close(self, sid: int) -> None:
        self.pool.close(sid)
        for corr, s in list(self.streams.items()):
            if s == sid:
                del self.streams[corr]

    def _response(self, out) -> object:
        named = out if isinstance(out, dict) else {self.outputs[0]: out}
        tensors = [pb_utils.Tensor(n, np.ascontiguousarray(named[n])[None]) for n in self.outputs]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def _empty(self) -> object:
        tensors = []
        for name in self.outputs:
            spec = self.specs[name]
            rest = [d for i, d in enumerate(spec.shape) if i != spec.batch_axis]
            shape = [1] + [d if isinstance(d, int) else 1 for d in rest]
            tensors.append(pb_utils.Tensor(name, np.zeros(shape, spec.dtype)))
        return pb_utils.InferenceResponse(output_tensors=tensors)

    # ------------------------------------------------------------------ stateless
    def _stateless(self, requests: list) -> list:
        groups: dict[tuple, list[int]] = {}
        feeds = []
        for i, request in enumerate(requests):
            feed = {
                n: pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in self.inputs
            }
            feeds.append(feed)
            groups.setdefault(tuple(v.shape for v in feed.values()), []).append(i)
        responses: list = [None] * len(requests)
        for rows in groups.values():  # requests of equal shapes share one call
            batch = {n: np.concatenate([feeds[i][n] for i in rows]) for n in self.inputs}
            try:
                outs = self.session.run(self.outputs, batch)
            except Exception as exc:
                for i in rows:
                    responses[i] = _error(exc)
                continue
            start = 0
            for i in rows:
                n = next(iter(feeds[i].values())).shape[0]
                tensors = [
                    pb_utils.Tensor(o, a[start : start + n]) for o, a in zip(self.outputs, outs)
                ]
                responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
                start += n
        return responses

    def finalize(self) -> None:
        if self.stateful:
            self.pool.shutdown()


def _flag(request, name: str, default: bool = False) -> bool:
    t = pb_utils.get_input_tensor_by_name(request, name)
    return default if t is None else bool(t.as_numpy().reshape(-1)[0])


def _error(exc: BaseException) -> object:
    message = " ".join(str(exc).split()) or type(exc).__name__
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))
