"""Issue 20: how close one frame per call is to onnxruntime's fixed cost, and what bounds
frames/s at chunk 32 / chunk 1. One process, one thread, contenders interleaved.

Per cell (the benchmark's reference model, 40 inputs, 128 hidden x 2 layers, 8 outputs),
three graphs of the same inputs and outputs are timed call by call, each through two
prebuilt IO bindings that swap the state buffers (the C++ call the runtime makes):

- ``floor``: every output an ``Identity`` of an input (frames -> y, each state part ->
  its output): onnxruntime's fixed cost per call with this many bound tensors;
- ``graph``: the exported model, no edgeseq code;
- ``graph_before``: the model exported without issue 20's edge rewrite (no time-major
  frames, no state parts): the graph the 0.65x target was set against;

plus ``StreamingPredictor.step`` on one frame for both exports. It prints the medians,
``step / floor``, and what the 0.65x target would need: ``floor / step_before`` is the
ratio left if the graph did no work at all.

Then the chunk bound: with ``t(T) = F + k*T`` per call (F fixed per call, k per frame,
fitted from T = 1 and T = 32), frames/s at chunk 32 / chunk 1 is ``32 (F + k) /
(F + 32 k)``; it reaches 5 only if ``k <= 27 F / 128``. The script prints F, k, the ratio
measured and the k that 5x would need, and the op shares of a 32-frame call
(onnxruntime's profiler), which say where k goes. Shares are printed with the recurrent
ops' share of all kernel time and of the time outside the model's linear head.

    python benchmarks/floor_ab.py                     # every cell
    python benchmarks/floor_ab.py --cells lstm --rounds 5
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def _floor_graph(model: Path, out: Path) -> Path:
    """A graph with ``model``'s inputs and outputs, each output an Identity of an input."""
    import onnx
    from onnx import helper

    proto = onnx.load(str(model), load_external_data=False)
    g = proto.graph
    frames, states = g.input[0], list(g.input[1:])
    y = onnx.ValueInfoProto()
    y.CopyFrom(frames)
    y.name = g.output[0].name
    nodes = [helper.make_node("Identity", [frames.name], [y.name])]
    outs = [y]
    for vi in states:  # state_in.* -> state_out.*, the same shape
        o = onnx.ValueInfoProto()
        o.CopyFrom(vi)
        o.name = vi.name.replace("state_in", "state_out", 1)
        nodes.append(helper.make_node("Identity", [vi.name], [o.name]))
        outs.append(o)
    graph = helper.make_graph(nodes, "floor", [frames, *states], outs)
    floor = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    floor.ir_version = proto.ir_version
    onnx.checker.check_model(floor, full_check=True)
    onnx.save(floor, str(out))
    return out


def _pingpong(path: Path, x: np.ndarray) -> Callable[[], object]:
    """One call of ``path`` through two IO bindings that swap state buffers (raw C++)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    ins, outs = sess.get_inputs(), sess.get_outputs()
    by_name = {o.name: o for o in outs}
    states = [(i, by_name[i.name.replace("state_in", "state_out", 1)]) for i in ins[1:]]
    value = ort.OrtValue.ortvalue_from_numpy

    def zeros(shape: list[Any]) -> np.ndarray:
        return np.zeros([d if isinstance(d, int) else 1 for d in shape], np.float32)

    frames = value(x.reshape(1, 1, -1))  # one frame: the same memory in either layout
    feed = {ins[0].name: frames.numpy(), **{i.name: zeros(i.shape) for i in ins[1:]}}
    y = value(np.zeros_like(sess.run([outs[0].name], feed)[0]))
    sets = [[value(zeros(i.shape)) for i in ins[1:]] for _ in (0, 1)]
    bindings = []
    for src, dst in ((0, 1), (1, 0)):
        b = sess.io_binding()
        b.bind_ortvalue_input(ins[0].name, frames)
        b.bind_ortvalue_output(outs[0].name, y)
        for (i, o), a, c in zip(states, sets[src], sets[dst]):
            b.bind_ortvalue_input(i.name, a)
            b.bind_ortvalue_output(o.name, c)
        bindings.append(b)
    raw = [b._iobinding for b in bindings]
    run, turn = sess._sess.run_with_iobinding, [0]
    keep = (sess, bindings, frames, sets, y)  # the bound buffers must outlive the calls

    def call() -> object:
        run(raw[turn[0]], None)
        turn[0] ^= 1
        return keep

    return call


def _interleave(calls: dict[str, Callable[[], object]], rounds: int, block: int):
    """Per round, each call's median over a block of calls; ``{name: [per round]}``."""
    out: dict[str, list[float]] = {k: [] for k in calls}
    for fn in calls.values():
        fn()
    for _ in range(rounds):
        for name, fn in calls.items():
            times = []
            for _ in range(block):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            out[name].append(statistics.median(times))
    return out


def _med(med: dict[str, list[float]], k: str) -> float:
    return statistics.median(med[k])


def _ratio(med: dict[str, list[float]], a: str, b: str) -> float:
    return statistics.median(x / y for x, y in zip(med[a], med[b]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", nargs="+", default=["lstm", "gru", "rnn"])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=300, help="calls per block (one frame)")
    args = ap.parse_args()

    import torch

    from edgeseq.bench._profile import ort_profile
    from edgeseq.exporters._layout import OpLayout
    from edgeseq.exporters.seq import export_model
    from edgeseq.runtime import StreamingPredictor
    from edgeseq.train.models import SeqConfig, SeqModel

    export_mod = importlib.import_module("edgeseq.exporters._write")
    rewrite = export_mod.to_op_layout
    work = Path(tempfile.mkdtemp(prefix="floor-ab-"))
    for cell in args.cells:
        torch.manual_seed(0)
        cfg = SeqConfig(cell=cell, input_size=40, hidden_size=128, layers=2, output_size=8)
        model = SeqModel(cfg).eval()
        new, before = work / f"{cell}.onnx", work / f"{cell}.before.onnx"
        export_model(model, new, mode="native")
        export_mod.to_op_layout = lambda proto, frames, states: OpLayout(False, list(states))
        try:
            export_model(model, before, mode="native")
        finally:
            export_mod.to_op_layout = rewrite
        rng = np.random.default_rng(0)
        frame = rng.standard_normal(40).astype(np.float32)
        pred, pred_before = (
            StreamingPredictor(new, threads=1),
            StreamingPredictor(before, threads=1),
        )
        calls = {
            "floor": _pingpong(_floor_graph(new, work / f"{cell}.floor.onnx"), frame),
            "graph": _pingpong(new, frame),
            "graph_before": _pingpong(before, frame),
            "step": lambda p=pred, f=frame: p.step(f),
            "step_before": lambda p=pred_before, f=frame: p.step(f),
        }
        med = _interleave(calls, args.rounds, args.calls)
        us = {k: _med(med, k) * 1e6 for k in med}
        print(f"\n{cell}: one frame per call, µs (median of {args.rounds} rounds)")
        for k, v in us.items():
            print(f"  {k:13s} {v:8.2f}")
        for x, y, what in (
            ("step", "floor", ""),
            ("step", "step_before", ""),
            ("floor", "step_before", " (no graph work at all)"),
            ("graph", "step_before", " (no edgeseq code)"),
        ):
            print(f"  {x} / {y}{what}: {_ratio(med, x, y):.3f}")
        print(
            f"  → edgeseq Python per call (step - graph) {us['step'] - us['graph']:.2f} µs; "
            f"the graph's own work (graph - floor) {us['graph'] - us['floor']:.2f} µs"
        )
        shares = ort_profile(new, 1, frame.reshape(1, 1, -1), 2000, work)["op_share"]
        print(f"  kernel time at T = 1: {_shares(shares)}")
        # the chunk bound: t(T) = F + k T per call
        chunks = {t: rng.standard_normal((t, 40)).astype(np.float32) for t in (1, 32)}
        ccalls = {str(t): (lambda c=c, p=pred: p.step(c)) for t, c in chunks.items()}
        cmed = _interleave(ccalls, args.rounds, max(20, args.calls // 10))
        t1, t32 = (_med(cmed, str(t)) * 1e6 for t in (1, 32))
        k = (t32 - t1) / 31
        fixed = t1 - k
        ratio = statistics.median(32 * a / b for a, b in zip(cmed["1"], cmed["32"]))
        print(f"\n{cell}: [T, 40] per call: T=1 {t1:.1f} µs, T=32 {t32:.1f} µs")
        print(
            f"  per call F = {fixed:.1f} µs, per frame k = {k:.2f} µs; chunk 32 / chunk 1 = "
            f"{ratio:.2f}; 5x needs k <= {27 * fixed / 128:.2f} µs at this F"
        )
        x32 = chunks[32][:, None, :]  # (T, batch 1, F): the graph takes frames time-major
        shares = ort_profile(new, 1, x32, 300, work)["op_share"]
        print(f"  kernel time at T = 32: {_shares(shares)}")


def _shares(shares: dict[str, float]) -> str:
    """Op-type shares, and the recurrent ops' share with and without the model's head."""
    from edgeseq.bench._targets import RECURRENT_OPS

    rec = sum(v for op, v in shares.items() if op in RECURRENT_OPS)
    head = shares.get("MatMul", 0.0) + shares.get("Add", 0.0)  # the linear head: model work
    text = ", ".join(f"{op} {v:.0%}" for op, v in shares.items())
    return (
        f"{text}; recurrent ops {rec:.3f} of all kernel time, {rec / (1 - head):.3f} of the "
        "kernel time outside the model's linear head (MatMul + Add)"
    )


if __name__ == "__main__":
    main()
