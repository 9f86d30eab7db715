"""Whether a graph traced at one frame count runs any other, as PyTorch does.

Tracing records a Python loop over time (``for t in range(x.shape[1])``) as that many
copies of its body, so a graph whose time axis is declared dynamic may hold only the
example's frame count. A loop that steps a cell is known (the cell loop style writes one
step per call); any other loop (a layer stepped per frame with the state carried in
``forward(x, state)``, per-frame code in a list) is found here by running the written
graph in onnxruntime on a longer sequence and comparing it with the adapted model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from edgeseq.errors import ExportError
from edgeseq.exporters._onnx import read_contract
from edgeseq.exporters._proxy import probe_sequence
from edgeseq.runtime._views import join_states

__all__ = ["one_step_note", "time_fixed"]

Run = Callable[
    [torch.Tensor, list[torch.Tensor]], tuple[tuple[torch.Tensor, ...], list[torch.Tensor]]
]


def time_fixed(
    path: Path,
    run_states: Run,
    x: torch.Tensor,
    states: list[torch.Tensor],
    extra: int = 3,
) -> str | None:
    """None if the graph at ``path`` (traced on ``x``) gives PyTorch's outputs and final
    states on ``x.shape[1] + extra`` frames, else what went wrong, in a few words.

    ``run_states(x, states)`` runs the adapted model; ``states`` fit ``x``'s batch.
    """
    import onnxruntime as ort

    seq = probe_sequence(x, x.shape[1] + extra, seed=21)
    with torch.no_grad():
        outs, finals = run_states(seq, states)
    want = [t.numpy() for t in (*outs, *finals)]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    contract = read_contract(path)  # frames and state as the graph takes them
    xs = seq.numpy()
    if (contract.frames.batch_axis, contract.frames.time_axis) == (1, 0):
        xs = np.ascontiguousarray(xs.swapaxes(0, 1))
    feeds = {"x": xs}
    if "lengths" in names:  # taken by the model, or wired into native ops after export
        feeds["lengths"] = np.full((seq.shape[0],), seq.shape[1], dtype=np.int32)
    views = contract.state_views()  # ``states`` are whole, in the views' order
    for view, s in zip(views, states, strict=True):
        start, arr = 0, s.numpy()
        for k in view.pairs:
            pair = contract.states[k]
            size = int(pair.shape[0]) if len(view.pairs) > 1 else len(arr)
            feeds[pair.input] = arr[start : start + size]
            start += size
    data = [o.name for o in contract.data_outputs()]
    try:
        got = sess.run([*data, *contract.state_outputs], feeds)
    except Exception as exc:  # onnxruntime's own errors: a shape fixed by the trace
        return f"onnxruntime refused {seq.shape[1]} frames ({str(exc).splitlines()[0][:120]})"
    got = got[: len(data)] + list(join_states(views, got[len(data) :]).values())
    for g, w in zip(got, want):
        if g.shape != w.shape:
            return f"an output of shape {g.shape} where PyTorch gives {w.shape}"
        if not np.allclose(g, w, atol=1e-3, rtol=1e-3):  # a fixed trace fails by far
            return f"outputs {float(np.abs(g - w).max()):.3g} away from PyTorch's"
    return None


def one_step_note(
    path: Path,
    run_states: Run,
    x: torch.Tensor,
    states: list[torch.Tensor],
    offline: bool,
    mode_note: str | None,
) -> str | None:
    """None if the any-length graph at ``path`` runs any length; else the contract's note
    for writing one step per call instead (offline, where that cannot be, an ExportError)."""
    why = time_fixed(path, run_states, x, states)
    if why is None:
        return None
    if offline:
        raise ExportError(
            f"the exported graph runs only the example's {x.shape[1]} frames ({why}): "
            "forward loops over time in Python, which tracing unrolls. Export it streaming "
            "(one step per call), or loop inside an nn.RNN/LSTM/GRU layer."
        )
    note = (
        f"forward loops over time in Python (a graph of {x.shape[1]} frames gave {why}); "
        "exported one frame per graph call"
    )
    return "; ".join(filter(None, [mode_note, note]))
