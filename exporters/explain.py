"""How a model will stream, layer by layer, before (or instead of) exporting it.

:func:`explain` reads the model the way :func:`~edgeseq.exporters.export` does: each
module a style claims (recurrent layer, cell loop, conv cache; see
:data:`~edgeseq.exporters.STYLES`) says how it streams and which state it carries; every
other module is probed whole against chunked (per frame and stateless, or where streaming
breaks and why); the verdict comes from an actual export to a temporary file, so it is the
export's own answer, refusal message included.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from edgeseq.errors import ExportError
from edgeseq.exporters._adapter import StreamAdapter, as_streamable, eager
from edgeseq.exporters._causal import first_culprit, probe_sequence
from edgeseq.exporters._onnx import Backend
from edgeseq.exporters._options import ExportOptions
from edgeseq.exporters._teach import sentence, trace_modules
from edgeseq.exporters._validate import check_args, fit_example, pick_mode, refuse_layers
from edgeseq.exporters.export import export, find_recurrent_layers
from edgeseq.table import format_table

__all__ = ["ExplainReport", "LayerPlan", "explain"]


@dataclass(frozen=True)
class LayerPlan:
    """One module (or the forward's signature) and how it streams, or why it cannot."""

    path: str
    kind: str  # the module's type
    how: str
    state: str = ""  # carried tensors with shapes, e.g. "h (1, batch, 5)"
    ok: bool = True


@dataclass
class ExplainReport:
    """What :func:`explain` found: per layer, the mode, and the export's verdict."""

    model: str
    mode: str
    chunk: int | None
    layers: list[LayerPlan] = field(default_factory=list)
    streams: bool = False
    reason: str | None = None  # why it cannot stream (the export's message)
    states: list[str] = field(default_factory=list)  # the contract's state inputs
    notes: list[str] = field(default_factory=list)
    offline: bool = False

    def table(self) -> str:
        """The plan as a table, then the verdict."""
        calls = f"{self.chunk} frame(s) per graph call" if self.chunk else "any frames per call"
        lines = [f"{self.model}: mode {self.mode!r} ({calls})", ""]
        rows = [(p.path, p.kind, p.how, p.state) for p in self.layers]
        lines.append(format_table(["layer", "type", "streamed as", "state"], rows))
        lines.append("")
        lines += [f"note: {n}" for n in self.notes]
        if self.streams and self.offline:
            lines.append("exports offline: whole sequence per call, no state carried")
        elif self.streams:
            lines.append(
                f"streams: {len(self.states)} state pair(s) ({', '.join(self.states) or 'none'}); "
                "chunked == whole checked at export"
            )
        else:
            lines.append(f"cannot stream: {self.reason}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _shape(t: torch.Tensor, axis: int) -> str:
    dims = [str(d) for d in t.shape]
    dims[axis] = "batch"
    return f"({', '.join(dims)})"


@eager()
def explain(
    model: nn.Module,
    example: torch.Tensor,
    *,
    mode: str | None = None,
    chunk: int | None = None,
    backend: Backend = "torchscript",
    offline: bool = False,
    lengths: bool | None = None,
    options: ExportOptions | None = None,
) -> ExplainReport:
    """Say per layer how ``model`` will be streamed by :func:`export` (same arguments;
    ``options`` as there: one :class:`~edgeseq.exporters.ExportOptions`, or its keywords).

    Returns an :class:`ExplainReport`: a row per module (native op, unrolled, conv cache,
    cell loop, stateless, explicit state, or why not) and whether the export succeeds;
    ``print(report)`` shows it. Raises :class:`ExportError` only for bad arguments.
    """
    if not isinstance(model, nn.Module):
        raise ExportError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    opts = ExportOptions.given(
        options, mode=mode, chunk=chunk, backend=backend, offline=offline, lengths=lengths
    )
    offline = opts.offline
    module = as_streamable(model)
    layers = find_recurrent_layers(module)
    picked, note = pick_mode(opts, layers)
    spec, graph_chunk = check_args(picked, opts.chunk)
    x = fit_example(example, graph_chunk)
    report = ExplainReport(
        type(model).__name__, picked, graph_chunk, notes=[note] if note else [], offline=offline
    )
    refused = {}
    for info in layers:
        try:
            refuse_layers([info], spec, opts)
        except ExportError as exc:
            refused[info.path] = str(exc).split(". ")[0]
    keeps = spec.takes_lengths and opts.lengths_for(spec)
    adapter = StreamAdapter(module, spec.runner, keeps, not offline)
    try:
        adapter.prepare(x, collect=True)
        states = adapter.initial_states(x)
    except ExportError as exc:
        report.reason = str(exc)
        report.layers = [LayerPlan(p.path, _kind(p), "?", ok=False) for p in adapter.proxies]
        return report
    if adapter.one_step() and not spec.fixed_chunk and not offline:
        report.chunk = 1
    shapes: dict[str, list[str]] = {}
    explicit = {p for p, _ in adapter.explicit.state_keys()} if adapter.explicit else set()
    for (path, name), s, ax in zip(adapter.state_keys(), states, adapter.state_axes()):
        label = ".".join(filter(None, [path, name])) if path in explicit else name
        shapes.setdefault(path, []).append(f"{label} {_shape(s, ax)}")
    report.layers = _rows(adapter, x, states, picked, refused, shapes, offline)
    with tempfile.TemporaryDirectory(prefix="edgeseq-explain-") as tmp:
        try:
            contract = export(model, Path(tmp) / "m.onnx", example=example, options=opts)
            report.streams, report.states = True, contract.state_inputs
            report.chunk = contract.model.chunk
        except ExportError as exc:
            report.reason = str(exc)
    return report


def _first_sentence(text: str) -> str:
    """A message's first sentence, for a table cell (the verdict line has it all)."""
    return text.split(". ")[0].rstrip(".")


def _kind(proxy: nn.Module) -> str:
    return type(getattr(proxy, "module", proxy)).__name__


def _rows(
    adapter: StreamAdapter,
    x: torch.Tensor,
    states: list[torch.Tensor],
    mode: str,
    refused: dict[str, str],
    shapes: dict[str, list[str]],
    offline: bool,
) -> list[LayerPlan]:
    """One row per proxy and per leaf module (and the culprit), in first-call order."""
    plans: list[LayerPlan] = []
    if adapter.explicit is not None:
        e = adapter.explicit
        plans.append(
            LayerPlan(
                f"forward({e.param})",
                "signature",
                f"explicit state: {len(e.names)} tensor(s) as state pairs",
                ", ".join(
                    s
                    for p in dict.fromkeys(k for k, _ in e.state_keys())
                    for s in shapes.get(p, [])
                ),
            )
        )
    proxies = {p.path: p for p in adapter.proxies}
    takes = adapter.takes_lengths

    def run(inp: torch.Tensor, st: list[torch.Tensor]):
        lengths = [torch.full((inp.shape[0],), inp.shape[1], dtype=torch.int32)]
        out = adapter(inp, *(lengths if takes else []), *st)
        n = adapter.n_outputs or 0
        return out[:n], list(out[n:])

    seq = probe_sequence(x, 10)
    rows = [s.narrow(ax, 0, 1) for s, ax in zip(states, adapter.state_axes())]
    init = [torch.cat([r] * seq.shape[0], dim=ax) for r, ax in zip(rows, adapter.state_axes())]
    traces = trace_modules(adapter.inner, list(proxies), run, seq, init, 1)
    culprit = None if offline else first_culprit(adapter, run, seq, init, 1)
    sizes = [1] * seq.shape[1]
    seen = set()
    for t in traces:
        seen.add(t.name)
        proxy = proxies.get(t.name)
        if proxy is not None:
            why = refused.get(t.name) or getattr(proxy, "refusal", None)
            how = _first_sentence(why) if why else proxy.how(mode)
            if offline:
                how, why = "offline: whole sequence per call, no state carried", None
            state = ", ".join(shapes.get(t.name, [])) if proxy.carries and not why else ""
            plans.append(LayerPlan(t.name, t.kind, how, state, ok=not why))
            continue
        is_culprit = culprit is not None and culprit[0] == t.name
        has_children = any(True for _ in adapter.inner.get_submodule(t.name).children())
        if has_children and not is_culprit:
            continue
        if is_culprit and culprit[3]:  # type: ignore[index]
            how = _first_sentence(sentence(culprit[2]))  # type: ignore[index]
            plans.append(LayerPlan(t.name, t.kind, how, ok=False))
        elif t.agrees(1, sizes) is False:
            plans.append(LayerPlan(t.name, t.kind, "input already differs (see above)", ok=False))
        elif len(t.whole) > 1:
            plans.append(LayerPlan(t.name, t.kind, "per step, inside the time loop: stateless"))
        else:
            plans.append(LayerPlan(t.name, t.kind, "per frame: stateless"))
    for name, mod in adapter.inner.named_modules():
        parts = name.split(".")
        ancestors = {".".join(parts[:i]) for i in range(1, len(parts))}
        under = bool(ancestors & (seen | set(proxies)))  # computed by a module that ran
        leaf = name in proxies or not any(True for _ in mod.children())
        if name and name not in seen and not under and leaf:
            plans.append(LayerPlan(name, _kind(mod), "not called by forward"))
    return plans
