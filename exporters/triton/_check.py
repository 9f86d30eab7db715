"""Validate a Triton model repository: Triton's schema, then what the schema cannot see.

1. ``config.pbtxt`` parses with ``tritonclient``'s ``model_config_pb2`` (misspelled fields,
   bad enums, oneof conflicts are refused with their line).
2. The config agrees with the model file: every input, output, control input and state
   exists in the graph with the same dtype and dims (batch-first, batch dim left out),
   state names are unique, every graph input is fed by something, initial states fit.
3. For a repository written by edgeseq: the controls its graph or ``model.py`` needs are
   declared (START, and READY for a ``direct`` graph; START/END for the python backend),
   and the python backend declares no implicit state (it would silently ignore it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseq.errors import RepositoryError
from edgeseq.exporters.triton._read import (
    _CONTROL_DTYPES,
    _DTYPES,
    _dtype_name,
    _graph,
    _kind_name,
    load_config,
)

__all__ = ["ModelCheck", "check_model", "check_repository", "load_config"]


@dataclass
class ModelCheck:
    """The outcome for one model folder: what was checked and any problems found."""

    name: str
    backend: str = "?"
    summary: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _dims(shape: list) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in shape]


class _Checker:
    def __init__(self, folder: Path, cfg: Any) -> None:
        self.folder, self.cfg = folder, cfg
        self.problems: list[str] = []
        self.batched = cfg.max_batch_size > 0

    def fail(self, where: str, expected: str, got: Any) -> None:
        self.problems.append(f"{where}: expected {expected}, got {got}")

    def want_dims(self, shape: list) -> list[int]:
        return _dims(shape[1:] if self.batched else shape)

    def tensor(
        self,
        where: str,
        name: str,
        dtype_enum: int,
        dims: list,
        table: dict,
        kind: str,
        name_field: str = "name",
    ) -> None:
        """One config tensor against the graph's: present, same dtype, same dims."""
        if name not in table:
            self.fail(f"{where}.{name_field}", f"a graph {kind} ({sorted(table)})", repr(name))
            return
        dtype, shape = table[name]
        shape = [d if isinstance(d, int) else "?" for d in shape]
        got = _DTYPES.get(_dtype_name(dtype_enum), _dtype_name(dtype_enum))
        if got != dtype:
            self.fail(f"{where}.data_type", f"{dtype} as the graph's {name!r}", got)
        if self.batched and shape and shape[0] != "?":
            self.fail(f"{where}", "a graph tensor with a free batch (first) dim", shape)
        if list(dims) != self.want_dims(shape):
            self.fail(f"{where}.dims", f"{self.want_dims(shape)} as the graph's {name!r}", dims)


def check_model(folder: Path) -> ModelCheck:
    """Check one model folder (``config.pbtxt`` and its version folders)."""
    folder = Path(folder)
    check = ModelCheck(folder.name)
    cfg = load_config(folder / "config.pbtxt")
    check.backend = cfg.backend or cfg.platform or "?"
    c = _Checker(folder, cfg)
    if cfg.name and cfg.name != folder.name:
        c.fail("name", f"the folder's name {folder.name!r}", repr(cfg.name))
    versions = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.isdigit())
    if not versions:
        c.fail("version folders", f"at least one numeric folder in {folder} (e.g. 1/)", "none")
        check.problems = c.problems
        return check
    latest = versions[-1]
    backend = check.backend
    ours = {k: v.string_value for k, v in cfg.parameters.items()}
    if backend in ("onnxruntime", "onnxruntime_onnx"):
        onnx_file = latest / (cfg.default_model_filename or "model.onnx")
        if not onnx_file.is_file():
            c.fail("model file", f"{onnx_file}", "nothing there")
        else:
            _check_onnx(c, onnx_file)
    elif backend == "python":
        if not (latest / "model.py").is_file():
            c.fail("model file", f"{latest / 'model.py'}", "nothing there")
        if any(k.startswith("edgeseq.") for k in ours):
            _check_edgeseq_python(c, latest / "model.onnx", ours)
    seq = cfg.sequence_batching
    if cfg.HasField("sequence_batching"):
        kept = f"{len(seq.state)} implicit states" if seq.state else "state kept by the model"
        strategy = seq.WhichOneof("strategy_choice") or "direct"
        check.summary = f"max_batch {cfg.max_batch_size}, sequence batching ({strategy}), {kept}"
    else:
        check.summary = f"max_batch {cfg.max_batch_size}, stateless"
    if not c.problems and seq.state and backend in ("onnxruntime", "onnxruntime_onnx"):
        _check_start_resets(
            c, folder, _graph(latest / (cfg.default_model_filename or "model.onnx"))[2]
        )
    check.problems = c.problems
    return check


def _check_onnx(c: _Checker, path: Path) -> None:
    cfg = c.cfg
    gin, gout, meta = _graph(path)
    fed: set[str] = set()
    for i, t in enumerate(cfg.input):
        c.tensor(f"input[{i}]", t.name, t.data_type, list(t.dims), gin, "input")
        fed.add(t.name)
    for i, t in enumerate(cfg.output):
        c.tensor(f"output[{i}]", t.name, t.data_type, list(t.dims), gout, "output")
    seq = cfg.sequence_batching
    controls: dict[str, str] = {}
    for i, ci in enumerate(seq.control_input):
        where = f"sequence_batching.control_input[{i}]"
        if ci.name not in gin:
            c.fail(f"{where}.name", f"a graph input ({sorted(gin)})", repr(ci.name))
            continue
        if ci.name in fed:
            c.fail(f"{where}.name", "a name not also listed in input", repr(ci.name))
        fed.add(ci.name)
        for k, ctl in enumerate(ci.control):
            kind = _kind_name(ctl.kind)
            controls[ci.name] = kind
            which = next((f for f in _CONTROL_DTYPES if getattr(ctl, f)), None)
            want = _CONTROL_DTYPES.get(which or "", "uint64" if "CORRID" in kind else "?")
            dtype, shape = gin[ci.name]
            if want != dtype:
                c.fail(f"{where}.control[{k}]", f"a {dtype} control as the graph's", which or kind)
            if c.batched and c.want_dims(shape) != [1]:
                c.fail(f"{where}.name", "a graph input shaped (batch, 1)", shape)
    names_in: set[str] = set()
    names_out: set[str] = set()
    for i, st in enumerate(seq.state):
        where = f"sequence_batching.state[{i}]"
        for attr, seen, table, kind in (
            ("input_name", names_in, gin, "input"),
            ("output_name", names_out, gout, "output"),
        ):
            nm = getattr(st, attr)
            if nm in seen:
                c.fail(f"{where}.{attr}", "a name used by one state only", repr(nm))
            seen.add(nm)
            c.tensor(where, nm, st.data_type, list(st.dims), table, kind, attr)
        if st.input_name in fed:
            c.fail(f"{where}.input_name", "a name not also listed in input", repr(st.input_name))
        fed.add(st.input_name)
        for init in st.initial_state:
            if init.data_type != st.data_type:
                c.fail(f"{where}.initial_state.data_type", "the state's data_type", init.data_type)
            if list(init.dims) != [d if d > 0 else 1 for d in st.dims]:
                c.fail(f"{where}.initial_state.dims", f"the state's dims {list(st.dims)}",
                       list(init.dims))  # fmt: skip
            src = init.WhichOneof("state_data")
            if src == "data_file" and not (c.folder / "initial_state" / init.data_file).is_file():
                c.fail(f"{where}.initial_state.data_file", "a file in initial_state/",
                       init.data_file)  # fmt: skip
    unfed = sorted(set(gin) - fed)
    if unfed:
        c.fail("input", f"every graph input fed (as input, control or state); unfed: {unfed}",
               sorted(fed))  # fmt: skip
    _check_contract_controls(c, meta, controls, seq)


def _check_contract_controls(c: _Checker, meta: dict, controls: dict[str, str], seq) -> None:
    from edgeseq.contract import METADATA_KEY, Contract

    if METADATA_KEY not in meta:
        return
    contract = Contract.from_metadata(meta)
    triton = contract.model.extra.get("triton", {})
    for name, kind in triton.get("controls", {}).items():
        if controls.get(name) != kind:
            c.fail("sequence_batching.control_input", f"{name!r} of kind {kind} (the graph "
                   "resets or keeps state with it)", controls.get(name, "missing"))  # fmt: skip
    if contract.states and c.cfg.HasField("sequence_batching"):
        declared = {s.input_name for s in seq.state}
        missing = [s.input for s in contract.states if s.input not in declared]
        if missing:
            c.fail("sequence_batching.state", f"a state for each pair {missing}", "none")
    elif contract.states:
        c.fail("sequence_batching", "a sequence_batching section (the graph carries state)",
               "none")  # fmt: skip


def _check_edgeseq_python(c: _Checker, path: Path, params: dict) -> None:
    from edgeseq.contract import METADATA_KEY, Contract

    cfg = c.cfg
    if not path.is_file():
        c.fail("model file", f"{path} (model.py steps it)", "nothing there")
        return
    meta = _graph(path)[2]
    if METADATA_KEY not in meta:
        c.fail("model file", f"{path.name} with an edgeseq contract", "none")
        return
    contract = Contract.from_metadata(meta, source=str(path))
    stateful = params.get("edgeseq.stateful") == "1"
    if not c.batched:
        c.fail("max_batch_size", "> 0 (requests of many sequences share a call)", 0)
    if not stateful:
        _check_onnx(c, path)  # a stateless model.py runs the graph as configured
        return
    from edgeseq.exporters.triton._config import per_request

    frames = per_request(contract.frames)
    if not cfg.input or cfg.input[0].name != frames.name:
        c.fail("input[0].name", f"the frames input {frames.name!r}",
               repr(cfg.input[0].name) if cfg.input else "none")  # fmt: skip
    else:
        c.tensor("input[0]", frames.name, cfg.input[0].data_type, list(cfg.input[0].dims),
                 {frames.name: (frames.dtype, frames.shape)}, "input")  # fmt: skip
    outs = {o.name: (o.dtype, per_request(o).shape) for o in contract.data_outputs()}
    for i, t in enumerate(cfg.output):
        c.tensor(f"output[{i}]", t.name, t.data_type, list(t.dims), outs, "output")
    if not cfg.HasField("sequence_batching"):
        c.fail("sequence_batching", "a sequence_batching section (model.py keeps streams)",
               "none")  # fmt: skip
        return
    seq = cfg.sequence_batching
    kinds = {ci.name: _kind_name(ctl.kind) for ci in seq.control_input for ctl in ci.control}
    for name in ("START", "END"):
        want = f"CONTROL_SEQUENCE_{name}"
        if kinds.get(name) != want:
            c.fail("sequence_batching.control_input", f"{name!r} of kind {want} (model.py opens "
                   "and closes streams with it)", kinds.get(name, "missing"))  # fmt: skip
    if seq.state:
        c.fail("sequence_batching.state", "no implicit state (the python backend ignores it; "
               "model.py keeps the state)", f"{len(seq.state)} states")  # fmt: skip


def _check_start_resets(c: _Checker, folder: Path, meta: dict) -> None:
    """Drive two sequences as Triton would, once from zero state and once from garbage:
    a graph that honours START gives the same outputs (Triton may feed either)."""
    import json

    import numpy as np

    from edgeseq.contract import METADATA_KEY

    frames = 16  # enough for front-ends with a receptive field; at most a chunk's worth
    if METADATA_KEY in meta:
        extra = json.loads(meta[METADATA_KEY]).get("model", {}).get("extra", {})
        frames = min(frames, extra.get("triton", {}).get("max_frames_per_request") or frames)

    from edgeseq.exporters.triton.emulate import _NP, Request, SequenceBatcher

    rng = np.random.default_rng(0)
    requests = []
    for _ in range(2):
        step = {}
        for i in c.cfg.input:
            dims = [frames if d < 0 else int(d) for d in i.dims]
            dtype = _NP.get(_dtype_name(i.data_type), np.float32)
            kind = np.dtype(dtype).kind
            arr = rng.normal(size=(2, *dims)) if kind == "f" else np.zeros((2, *dims))
            step[i.name] = arr.astype(dtype)
        requests.append(step)
    results = []
    for start_state in ("zeros", "garbage"):
        try:
            sb = SequenceBatcher(folder, start_state=start_state)
            outs = []
            for t, step in enumerate(requests):
                batch = [Request(s + 1, {n: a[s : s + 1] for n, a in step.items()}, start=t == 0)
                         for s in range(2)]  # fmt: skip
                outs += [o for r in sb.infer(batch) for o in r.values()]
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            c.fail("model", "the graph to run as Triton drives it (two sequences, START)", first)
            return
        results.append(outs)
    worst = max(float(np.max(np.abs(a.astype(np.float64) - b))) for a, b in zip(*results))
    if not worst <= 1e-6:
        c.fail("sequence_batching.control_input", "START to reset the state: outputs after "
               "START must not depend on the state Triton feeds on the first request",
               f"a difference of {worst:.3g} between zero and garbage start states")  # fmt: skip


def check_repository(root: str | Path, models: list[str] | None = None) -> list[ModelCheck]:
    """Check every model folder of a repository (or the named ones).

    Returns one :class:`ModelCheck` per model; raises :class:`RepositoryError` naming the
    first problem of each failing model.
    """
    root = Path(root)
    if not root.is_dir():
        raise RepositoryError(f"{root} is not a folder; expected a Triton model repository.")
    folders = (
        [root / m for m in models]
        if models
        else sorted(p for p in root.iterdir() if p.is_dir() and (p / "config.pbtxt").exists())
    )
    if not folders:
        raise RepositoryError(
            f"{root} holds no model folder with a config.pbtxt; expected REPO/<model>/config.pbtxt."
        )
    checks = [check_model(f) for f in folders]
    bad = [ch for ch in checks if not ch.ok]
    if bad:
        raise RepositoryError(
            "; ".join(f"{root / ch.name / 'config.pbtxt'}: {ch.problems[0]}" for ch in bad)
            + ". Fix the config (or regenerate it with edgeseq triton)."
        )
    return checks
