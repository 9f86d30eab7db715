"""Issue 20: what the glue left in a native graph costs one frame, fold by fold.

The exported reference graph (40 inputs, 128 hidden x 2 layers, 8 outputs) runs
``LSTM -> Squeeze -> LSTM -> Squeeze -> Transpose -> MatMul -> Add``. This script writes
variants of that file by hand (measurement only: none is what the exporter writes) and
times each through two IO bindings that swap the state buffers (the runtime's C++ call),
interleaved call by call, one thread:

- ``exported``: the file as ``export`` writes it;
- ``reshape``: each Squeeze written as ``Reshape(Y, [0, -1, H])`` (onnxruntime's CPU
  kernels for both are aliases of their input);
- ``y_time_major``: no output Transpose (y comes out ``(time, batch, 8)``);
- ``one_frame``: ``y_time_major`` where each layer reads the previous layer's ``Y_h``
  and the head reads the last ``Y_h`` (no Squeeze): right for one frame per call only.

It checks every variant's outputs against ``exported`` (same values), prints the median
time per call, the ratio to ``exported`` (median of per-round ratios), and onnxruntime's
kernel-time shares per op type, with the recurrent ops' share of all kernel time and of
the kernel time outside the model's linear head (MatMul + Add, the model's own compute).

    python benchmarks/glue_ab.py                    # every cell
    python benchmarks/glue_ab.py --cells lstm --rounds 5
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
from pathlib import Path

import numpy as np
from floor_ab import _interleave, _pingpong, _ratio, _shares  # this script's folder


def _variant(base, kind: str, hidden: int):  # type: ignore[no-untyped-def]
    import onnx
    from onnx import numpy_helper

    m = copy.deepcopy(base)
    g = m.graph
    if kind == "exported":
        return m
    if kind == "reshape":
        g.initializer.append(numpy_helper.from_array(np.array([0, -1, hidden]), "y_shape"))
        for n in g.node:
            if n.op_type == "Squeeze":
                n.op_type, n.input[1] = "Reshape", "y_shape"
        return m

    def rewire(old: str, new: str) -> None:
        for n in g.node:
            for i, v in enumerate(n.input):
                if v == old:
                    n.input[i] = new

    tr = next(n for n in g.node if n.op_type == "Transpose")
    rewire(tr.output[0], tr.input[0])
    g.node.remove(tr)
    dims = g.output[0].type.tensor_type.shape.dim
    dims[0].dim_param, dims[1].dim_param = "time", "batch"
    if kind == "one_frame":
        rec = [n for n in g.node if n.op_type in ("LSTM", "GRU", "RNN")]
        for sq, op in zip([n for n in g.node if n.op_type == "Squeeze"], rec):
            rewire(sq.output[0], op.output[1])  # Y_h (1, batch, H): Y of one frame
            g.node.remove(sq)
    onnx.checker.check_model(m, full_check=True)
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", nargs="+", default=["lstm", "gru", "rnn"])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=300, help="calls per block")
    args = ap.parse_args()

    import onnx
    import onnxruntime as ort
    import torch

    from edgeseq.bench._profile import ort_profile
    from edgeseq.exporters.seq import export_model
    from edgeseq.train.models import SeqConfig, SeqModel

    work = Path(tempfile.mkdtemp(prefix="glue-ab-"))
    kinds = ["exported", "reshape", "y_time_major", "one_frame"]
    for cell in args.cells:
        torch.manual_seed(0)
        cfg = SeqConfig(cell=cell, input_size=40, hidden_size=128, layers=2, output_size=8)
        path = work / f"{cell}.onnx"
        export_model(SeqModel(cfg).eval(), path, mode="native")
        base = onnx.load(str(path))
        frame = np.random.default_rng(0).standard_normal(40).astype(np.float32)
        files, calls, ys = {}, {}, {}
        for kind in kinds:
            files[kind] = work / f"{cell}.{kind}.onnx"
            onnx.save(_variant(base, kind, 128), str(files[kind]))
            sess = ort.InferenceSession(str(files[kind]), providers=["CPUExecutionProvider"])
            feed = {i.name: np.zeros([1 if isinstance(d, str) else d for d in i.shape], "f4")
                    for i in sess.get_inputs()}  # fmt: skip
            feed["x"] = frame.reshape(1, 1, -1)
            ys[kind] = sess.run([sess.get_outputs()[0].name], feed)[0].reshape(-1)
            calls[kind] = _pingpong(files[kind], frame)
        for kind in kinds:  # one frame: (1, 1, 8) in either layout
            assert np.array_equal(ys[kind], ys["exported"]), (cell, kind)
        med = _interleave(calls, args.rounds, args.calls)
        print(f"\n{cell}: one frame per call through IO binding (outputs equal in every variant)")
        for kind in kinds:
            us = statistics.median(med[kind]) * 1e6
            print(f"  {kind:13s} {us:8.2f} µs  × exported {_ratio(med, kind, 'exported'):.3f}")
        for kind in kinds:
            shares = ort_profile(files[kind], 1, frame.reshape(1, 1, -1), 2000, work)["op_share"]
            print(f"  kernel time, {kind}: {_shares(shares)}")


if __name__ == "__main__":
    main()
