"""Drive an onnxruntime-backend model with onnxruntime exactly as Triton's sequence batcher does.

Triton's onnxruntime backend only ships in NVIDIA's containers, so the rewritten graph
cannot be served here; what can be reproduced is every tensor Triton would feed it:

- implicit state kept per correlation id and fed back batch-first, one row per sequence;
- on START, the state from ``initial_state`` (``zero_data``) or, as Triton does without
  it, uninitialised memory (``start_state="garbage"``: random values), which the graph
  must replace with the contract's initial state;
- START / READY control values, ``(batch, 1)``, in the config's encoding;
- several sequences in one call: ``oldest`` batches only ready requests of equal shapes;
  ``direct`` gives each sequence its slot and fills idle slots with garbage and READY=0;
- END releasing the state; Triton's errors for a request without a correlation id and
  a sequence whose first request lacks START.

Not reproduced: queueing and timing, idle timeouts, instance groups, GPUs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgeseq.errors import InputError, StreamError
from edgeseq.exporters.triton._read import _dtype_name, _kind_name, load_config

__all__ = ["Request", "SequenceBatcher"]

_NP = {
    "TYPE_FP32": np.float32,
    "TYPE_FP16": np.float16,
    "TYPE_FP64": np.float64,
    "TYPE_INT64": np.int64,
    "TYPE_INT32": np.int32,
    "TYPE_BOOL": np.bool_,
    "TYPE_UINT8": np.uint8,
    "TYPE_INT8": np.int8,
    "TYPE_UINT64": np.uint64,
}


_ENCODINGS = (
    ("int32_false_true", np.int32),
    ("fp32_false_true", np.float32),
    ("bool_false_true", np.bool_),
)


@dataclass
class Request:
    """One inference request of a sequence: inputs with their batch dim of 1."""

    sequence_id: int | str
    inputs: Mapping[str, np.ndarray]
    start: bool = False
    end: bool = False
    outputs: dict[str, np.ndarray] = field(default_factory=dict)  # filled by infer()


class SequenceBatcher:
    """A model folder (``config.pbtxt`` + ``1/model.onnx``) driven the way Triton drives it.

    Examples
    --------
    >>> sb = SequenceBatcher("repo/model", start_state="garbage")
    >>> a, b = Request(1, {"x": xa}, start=True), Request(2, {"x": xb}, start=True)
    >>> sb.infer([a, b])            # ONE onnxruntime call for both sequences
    >>> a.outputs["y"]              # (1, T, out)
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        start_state: Literal["zeros", "garbage"] = "zeros",
        seed: int = 0,
    ) -> None:
        import onnxruntime as ort

        folder = Path(model_dir)
        self.config = cfg = load_config(folder / "config.pbtxt")
        versions = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.isdigit())
        path = versions[-1] / (cfg.default_model_filename or "model.onnx")
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.returned = [o.name for o in cfg.output]  # what a client can ask for
        seq = cfg.sequence_batching
        self.strategy = seq.WhichOneof("strategy_choice") or "direct"
        self.max_batch = max(cfg.max_batch_size, 1)
        self.start_state = start_state
        self.rng = np.random.default_rng(seed)
        self.controls: list[tuple[str, str, Any]] = []  # (name, kind, (false, true))
        for ci in seq.control_input:
            for ctl in ci.control:
                dtype, values = np.int32, None
                for attr, t in _ENCODINGS:
                    if len(getattr(ctl, attr)):
                        dtype, values = t, list(getattr(ctl, attr))
                self.controls.append((ci.name, _kind_name(ctl.kind), (dtype, values)))
        self.states = [
            (s.input_name, s.output_name, [int(d) for d in s.dims], _NP[_dtype_name(s.data_type)])
            for s in seq.state
        ]
        self._state: dict[Any, list[np.ndarray]] = {}  # sequence -> one row per state
        self._slots: dict[Any, int] = {}  # direct strategy: sequence -> batch slot
        self.calls = 0

    # ------------------------------------------------------------------ state
    def _initial(self, dims: list[int], dtype: Any) -> np.ndarray:
        if self.start_state == "zeros":
            return np.zeros(dims, dtype)
        return self.rng.normal(0, 3, size=dims).astype(dtype)  # uninitialised memory

    @property
    def sequences(self) -> list[Any]:
        """Correlation ids of the sequences Triton holds state for."""
        return list(self._state)

    # ------------------------------------------------------------------ calls
    def _admit(self, r: Request) -> None:
        sid = r.sequence_id
        if sid in (0, "", None):
            raise InputError(
                "inference request to model must specify a non-zero or non-empty correlation "
                "ID (Triton's error)"
            )
        if r.start:
            self._state[sid] = [self._initial(d, t) for _, _, d, t in self.states]
            if self.strategy == "direct" and sid not in self._slots:
                used = set(self._slots.values())
                free = [k for k in range(self.max_batch) if k not in used]
                if not free:
                    raise StreamError(
                        f"all {self.max_batch} batch slots are busy; Triton would put sequence "
                        f"{sid!r} in its backlog until one ends."
                    )
                self._slots[sid] = free[0]
        elif sid not in self._state:
            raise InputError(
                f"inference request for sequence {sid} to model must specify the START flag "
                "on the first request of the sequence (Triton's error)"
            )

    def infer(self, requests: Sequence[Request]) -> list[dict[str, np.ndarray]]:
        """Run ``requests`` (one per sequence, equal shapes) in ONE model call, as Triton
        batches them; fill and return each request's outputs (batch dim 1 kept)."""
        if not requests or len(requests) > self.max_batch:
            raise InputError(
                f"expected 1 to {self.max_batch} requests per call, got {len(requests)}"
            )
        ids = [r.sequence_id for r in requests]
        if len(set(ids)) != len(ids):
            raise InputError("Triton never batches two requests of one sequence in a call")
        names = list(requests[0].inputs)
        for r in requests:
            shapes = {n: np.shape(r.inputs[n]) for n in names}
            if set(r.inputs) != set(names) or any(s[0] != 1 for s in shapes.values()):
                raise InputError("every request carries the same inputs with batch dim 1")
            if shapes != {n: np.shape(requests[0].inputs[n]) for n in names}:
                raise InputError("Triton batches only requests whose inputs have equal shapes")
        for r in requests:
            self._admit(r)
        if self.strategy == "direct":
            rows = {self._slots[r.sequence_id]: r for r in requests}
            size = max(rows) + 1
        else:
            rows = dict(enumerate(requests))
            size = len(requests)
        feed: dict[str, np.ndarray] = {}
        for n in names:
            ref = np.asarray(requests[0].inputs[n])
            idle = self.rng.normal(0, 3, size=(size, *ref.shape[1:])).astype(ref.dtype)
            for k, r in rows.items():
                idle[k] = r.inputs[n][0]
            feed[n] = idle
        for name, kind, (dtype, values) in self.controls:
            off, on = (values[0], values[1]) if values else (0, 1)
            col = np.full((size, 1), off, dtype)
            for k, r in rows.items():
                flag = {"CONTROL_SEQUENCE_START": r.start, "CONTROL_SEQUENCE_END": r.end}.get(
                    kind, True
                )
                if kind == "CONTROL_SEQUENCE_CORRID":
                    col = col.astype(np.uint64)
                    col[k] = r.sequence_id
                elif flag:
                    col[k] = on
            feed[name] = col
        for j, (s_in, _, dims, dtype) in enumerate(self.states):
            batch = self.rng.normal(0, 3, size=(size, *dims)).astype(dtype)  # idle slots
            for k, r in rows.items():
                batch[k] = self._state[r.sequence_id][j]
            feed[s_in] = batch
        outs = dict(zip(self.outputs, self.session.run(self.outputs, feed)))
        self.calls += 1
        results = []
        for k, r in rows.items():
            self._state[r.sequence_id] = [outs[s_out][k].copy() for _, s_out, _, _ in self.states]
            r.outputs = {n: outs[n][k : k + 1].copy() for n in self.returned}
            if r.end:
                del self._state[r.sequence_id]
                self._slots.pop(r.sequence_id, None)
        for r in requests:
            results.append(r.outputs)
        return results
