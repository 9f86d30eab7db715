"""Verification: whole-sequence PyTorch vs the exported model streamed the ways devices do.

:func:`verify` streams a sequence of a length the export never saw through the ONNX
model in chunkings {1, 3, 7, whole} at batch sizes {1, 3} (batch 1 through
:class:`~edgeseq.runtime.StreamingPredictor`; batch 3 through one onnxruntime session with
rows of different lengths and explicit state), compares every output and final state with
PyTorch run on each whole row, and checks the graph's op types against its mode. A model
with per-stream memory starts every stream from random memory, given to PyTorch too. It
returns a :class:`VerifyReport` of structured diffs; the caller decides pass or fail by
tolerance (shape and dtype mismatches always fail).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from edgeseq.contract import Contract
from edgeseq.errors import ExportError, ModelLoadError, VerificationError
from edgeseq.exporters._adapter import StreamAdapter, as_streamable, eager
from edgeseq.exporters._onnx import read_contract
from edgeseq.exporters._report import TensorDiff, VerifyReport, diff
from edgeseq.exporters._runtimes import RUNTIMES, Runner, open_runtime
from edgeseq.exporters._streams import batched_stream, model_space, predictor_stream
from edgeseq.exporters.export import (
    check_ops,
    expects_recurrent_ops,
    memory_input_name,
    state_input_name,
)
from edgeseq.exporters.modes import MODES
from edgeseq.runtime import StreamingPredictor
from edgeseq.runtime._views import join_states

__all__ = ["TensorDiff", "VerifyReport", "verify"]

CHUNKINGS: tuple[int | None, ...] = (1, 3, 7, None)  # None: the whole sequence in one call


@eager()
def verify(
    reference: nn.Module,
    model_path: str | Path,
    *,
    time: int | None = None,
    chunkings: Sequence[int | None] = CHUNKINGS,
    batches: Sequence[int] = (1, 3),
    vocab_size: int | None = None,
    seed: int = 0,
    runtime: str = "onnxruntime",
) -> VerifyReport:
    """Compare ``reference`` (PyTorch, whole sequence) with the model at ``model_path``.

    Parameters
    ----------
    reference
        The module that was exported: a user module (``forward(x)`` returns a tensor or
        a tuple), or an edgeseq ``SeqModel`` / ``Seq2Seq`` (then its init/encoder model
        beside ``model_path`` is verified too).
    time
        Frames per test sequence; by default one the export example did not have, and for
        fixed-chunk graphs not a multiple of the chunk.
    chunkings
        Frames per streaming call; None is the whole sequence in one call.
    batches
        Batch sizes; rows of a batch have different lengths when the graph takes
        ``lengths`` (and every output has a time axis).
    vocab_size
        Token-id range for token models (default: the contract's vocabulary or the
        reference's first nn.Embedding).
    runtime
        Where the ONNX side runs: ``onnxruntime`` (batch 1 through
        :class:`~edgeseq.runtime.StreamingPredictor`), or ``openvino``, ``tract`` or
        ``reference`` (``onnx.reference``), each driven through its own API with the state
        fed back explicitly (see :data:`edgeseq.exporters.RUNTIMES`). A runtime that
        refuses the model or a call is a failed check with the reason, not a crash.

    Returns
    -------
    VerifyReport
        ``report.ok(atol=1e-5)`` decides; ``report.table()`` prints it.
    """
    from edgeseq.exporters import seq  # torch-side helpers for edgeseq's own models
    from edgeseq.train.models import Seq2Seq, SeqModel

    path = Path(model_path)
    if runtime not in RUNTIMES:
        raise ExportError(f"runtime must be one of {list(RUNTIMES)}, got {runtime!r}")
    if isinstance(reference, (SeqModel, Seq2Seq)):
        graphs = seq.graphs_to_verify(reference, path)
    elif isinstance(reference, nn.Module):
        graphs = [(path, as_streamable(reference))]
    else:
        raise ExportError(f"reference must be a torch.nn.Module, got {type(reference).__name__}")
    report = VerifyReport(model=str(path), runtime=runtime)
    for sub_path, module in [*graphs, *_step_graphs(graphs)]:
        if module is None:  # the one-to-many bridge: condition -> state
            bridge = _verify_bridge(reference, sub_path, _read_contract(path), seed, runtime)
            report.merge(bridge, prefix=sub_path.name)
            continue
        sub = _verify_graph(module, sub_path, time, chunkings, batches, vocab_size, seed, runtime)
        report.merge(sub, prefix=sub_path.name if sub_path != path else "")
    return report


def _step_graphs(graphs: list[tuple[Path, nn.Module | None]]) -> list[tuple[Path, nn.Module]]:
    """The one-step graph beside each fixed-chunk graph, checked on its own too."""
    found = []
    for sub_path, module in graphs:
        if module is None or sub_path.suffix == ".ort":
            continue
        ref = read_contract(sub_path).model.extra.get("step_model")
        if isinstance(ref, dict) and sub_path.with_name(ref["file"]).is_file():
            found.append((sub_path.with_name(ref["file"]), module))
    return found


def _read_contract(path: Path) -> Contract:
    return StreamingPredictor(path).contract


def _pick_time(contract: Contract, time: int | None) -> int:
    chunk = contract.model.chunk
    if time is not None:
        if time < 1:
            raise ExportError(f"time must be >= 1 frame, got {time}")
        return time
    example = contract.model.extra.get("example_time")
    if not contract.model.stateful:  # one call per sequence
        t = min(11, chunk) if chunk else 11
        return t - 1 if t == example and t > 1 else t
    if chunk:
        return 2 * chunk + 3 if chunk > 3 else 4 * chunk + 1  # several calls, a padded tail
    return 13 if example == 11 else 11


def _inputs(
    contract: Contract, module: nn.Module, batch: int, time: int, vocab: int | None, seed: int
) -> np.ndarray:
    spec = contract.frames
    rng = np.random.default_rng(seed)
    trailing = [int(d) for d in spec.shape[2:]]
    if np.dtype(spec.dtype).kind in "iu":
        vocab = vocab or (len(contract.preprocessing.vocab or []) or None)
        if vocab is None:
            emb = next((m for m in module.modules() if isinstance(m, nn.Embedding)), None)
            vocab = emb.num_embeddings if emb is not None else None
        if vocab is None:
            raise ExportError(
                "the model takes token ids but neither the contract nor the reference says "
                "how many: pass vocab_size= (CLI: --vocab-size)."
            )
        return rng.integers(0, vocab, (batch, time, *trailing)).astype(spec.dtype)
    return rng.standard_normal((batch, time, *trailing)).astype(np.float32)


def _reference(
    adapter: StreamAdapter, x: np.ndarray, n_keep: int, memory: dict[str, np.ndarray]
) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """PyTorch on the whole row(s): outputs and final states by state input name."""
    with torch.no_grad():
        mem = [torch.from_numpy(m) for m in memory.values()]
        outs, states = adapter.run_plain(torch.from_numpy(x[:, :n_keep]), mem)
    names = [state_input_name(p, n) for p, n in adapter.state_keys()] + list(memory)
    return [o.numpy() for o in outs], dict(zip(names, (s.numpy() for s in states)))


def _memory(contract: Contract, batch: int, seed: int) -> dict[str, np.ndarray]:
    """Random per-stream memory ``(batch, ...)`` by memory input name: the streams start
    from it, so the check covers what the model reads from it (and that it passes through)."""
    rng = np.random.default_rng(seed + 1000)
    pairs = {p.input: p for p in contract.states}
    result = {}
    for name in contract.memory:
        shape = [batch if isinstance(d, str) else d for d in pairs[name].shape]
        result[name] = rng.standard_normal(shape).astype(np.float32)
    return result


def _verify_graph(
    module: nn.Module,
    path: Path,
    time: int | None,
    chunkings: Sequence[int | None],
    batches: Sequence[int],
    vocab: int | None,
    seed: int,
    runtime: str = "onnxruntime",
) -> VerifyReport:
    contract = _read_contract(path)
    facts = contract.model
    # an offline graph is built with native ops, but what it does is whole sequences
    mode = facts.mode if facts.stateful else "offline"
    report = VerifyReport(model=str(path), mode=mode, runtime=runtime)
    if path.suffix == ".ort":
        report.notes.append("op types not checked: .ort files are read by onnxruntime only")
    elif facts.mode in MODES:
        recurrent = expects_recurrent_ops(facts.extra.get("streamed"))
        report.op_problems.extend(
            check_ops(onnx.load(str(path)), facts.mode, expect_recurrent=recurrent)
        )
    else:
        report.notes.append(f"mode {facts.mode!r} is not registered: op types not checked")
    kwargs = [n.removeprefix(memory_input_name("")) for n in contract.memory]
    adapter = StreamAdapter(module, carry_state=facts.stateful, memory=kwargs)
    if not facts.stateful:
        chunkings = [None]
        report.notes.append("offline model: every call is a whole sequence, no state carried")
    total = _pick_time(contract, time)
    outs = contract.data_outputs()
    out_names = [o.name for o in outs]
    timeless = any(o.time_axis is None for o in outs)
    if runtime == "onnxruntime":
        pred: StreamingPredictor | None = StreamingPredictor(path, contract=model_space(contract))
        session: Runner = open_runtime(runtime, path)
    else:  # the device's own loop: state fed and read back through the runtime's API
        pred = None
        try:
            session = open_runtime(runtime, path)
        except ModelLoadError as exc:  # a refusal is a failed check, with its reason
            report.errors.append(str(exc))
            return report
        what = RUNTIMES[runtime].description
        report.notes.append(f"{runtime} ({what}): every batch size through its own API")
    for b in batches:
        x = _inputs(contract, module, b, total, vocab, seed + b)
        lengths = np.full((b,), total, dtype=np.int32)
        if b > 1 and contract.lengths and not timeless:
            lengths = np.maximum(1, total - np.arange(b) * 4).astype(np.int32)  # T, T-4, ...
        memory = _memory(contract, b, seed + b)
        refs = _references(adapter, x, lengths, path, memory)
        for k in chunkings:
            label = f"batch {b}" + (
                f" (lengths {','.join(map(str, lengths))})" if len(set(lengths)) > 1 else ""
            )
            label += f", {f'chunks of {k}' if k else 'whole'} ({total} frames)"
            try:
                if b == 1 and pred is not None:
                    got, got_states = predictor_stream(pred, x, k, memory)
                else:
                    got, got_states = batched_stream(session, contract, x, lengths, k, memory)
            except Exception as exc:  # a run that fails is a failed check, not a crash
                report.errors.append(f"{label}: {type(exc).__name__}: {exc}")
                continue
            for i, o in enumerate(outs):
                pairs = [
                    (_row(got[o.name], o.batch_axis, o.time_axis, r, int(lengths[r])), ref[0][i])
                    for r, ref in enumerate(refs)
                ]
                report.diffs.append(diff(label, o.name, "output", pairs))
            for s in contract.state_views():  # parts of a state compared whole
                pairs = [
                    (np.take(got_states[s.name], [r], axis=s.batch_axis), ref[1][s.name])
                    for r, ref in enumerate(refs)
                    if s.name in ref[1]
                ]
                if pairs:  # the final state: what the graph returns as s.output
                    report.diffs.append(diff(label, s.output, "state", pairs))
    if out_names and not report.diffs and not report.errors:
        report.errors.append("nothing was compared")
    return report


def _references(
    adapter: StreamAdapter,
    x: np.ndarray,
    lengths: np.ndarray,
    path: Path,
    memory: dict[str, np.ndarray],
) -> list:
    """PyTorch on each row (from its row of ``memory``); a reference that cannot take the
    graph's frames is not the model the graph was exported from, and is refused saying so."""
    try:
        return [
            _reference(
                adapter, x[r : r + 1], int(lengths[r]), {k: v[r : r + 1] for k, v in memory.items()}
            )
            for r in range(len(x))
        ]
    except ExportError as exc:
        cause = exc.__cause__ or exc
        per_step = list(x.shape[2:])
        takes = f"{x.dtype} frames of shape {per_step}" if per_step else f"{x.dtype} values"
        if x.dtype.kind in "iu" and not per_step:
            takes = f"token ids ({x.dtype})"
        raise VerificationError(
            f"{path.name} takes {takes} per time step, and the reference cannot run on "
            f"them ({type(cause).__name__}: "
            f"{str(cause).splitlines()[0] if str(cause) else ''}): expected the model that "
            f"{path.name} was exported from; check the pair given to verify."
        ) from None


def _row(arr: np.ndarray, b_ax: int | None, t_ax: int | None, r: int, n: int) -> np.ndarray:
    """Row ``r`` of a batched output (batch axis kept, size 1), its first ``n`` frames."""
    if b_ax is not None:
        arr = np.take(arr, [r], axis=b_ax)
    if t_ax is not None:
        arr = np.take(arr, np.arange(min(n, arr.shape[t_ax])), axis=t_ax)
    return arr


def _verify_bridge(
    model: Any, path: Path, decoder: Contract, seed: int, runtime: str
) -> VerifyReport:
    """The one-to-many init model: condition ``(batch, C)`` -> initial state, vs PyTorch.

    It gives one output per ``decoder`` state pair; parts of a state are compared whole."""
    contract = _read_contract(path)
    report = VerifyReport(model=str(path), mode=contract.model.mode, runtime=runtime)
    session = open_runtime(runtime, path)
    spec = contract.inputs[0]
    rng = np.random.default_rng(seed)
    names = [o.name for o in contract.outputs]
    for b in (1, 3):
        cond = rng.standard_normal((b, int(spec.shape[-1]))).astype(np.float32)
        got = dict(zip(names, session.run(names, {spec.name: cond})))
        whole = join_states(decoder.state_views(), [got[p.input] for p in decoder.states])
        with torch.no_grad():
            want = [t.numpy() for t in model.init_state(condition=torch.from_numpy(cond))]
        for (name, g), w in zip(whole.items(), want, strict=True):
            report.diffs.append(diff(f"batch {b}", name, "state", [(g, w)]))
    return report
