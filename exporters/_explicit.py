"""Explicit state in the signature: ``forward(x, state=None) -> (y, state)`` streamed as it is.

The lecture's form carries the state in the open: a tensor, an ``(h, c)`` tuple, a list of
per-layer tuples or a dict. The returned state becomes the graph's state outputs and the
``state`` argument its state inputs, one pair per tensor, named after the argument and
the tensor's place in the structure (``state_in.state``, ``state_in.state.0.1``,
``state_in.hidden.h``). The ``y`` part is streamed like any output. The state may also
be spread over several arguments, ``forward(x, h=None, c=None) -> (y, h, c)``: each
argument is returned in the same order at the end (``state_in.h``, ``state_in.c``).

The initial value is what ``forward(x)`` starts from: zeros, or the tensors the forward
hands its layers when ``state`` is None (e.g. a learned initial state), checked by running
the model from it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from edgeseq.errors import ExportError

__all__ = ["ExplicitState", "find_explicit_state", "flatten", "unflatten"]

Spec = Any  # "t" for a tensor, or (kind, [(key, Spec), ...]) for tuple/list/dict


def flatten(obj: Any, prefix: str = "") -> tuple[list[torch.Tensor], list[str], Spec] | None:
    """Leaves, their dotted names and the structure of a tensor tree; None if not one."""
    if isinstance(obj, torch.Tensor):
        return [obj], [prefix], "t"
    if isinstance(obj, (tuple, list, dict)):
        items = list(obj.items()) if isinstance(obj, dict) else list(enumerate(obj))
        leaves: list[torch.Tensor] = []
        names: list[str] = []
        specs = []
        for key, value in items:
            sub = flatten(value, f"{prefix}.{key}" if prefix else str(key))
            if sub is None:
                return None
            leaves += sub[0]
            names += sub[1]
            specs.append((key, sub[2]))
        kind = "dict" if isinstance(obj, dict) else type(obj).__name__
        return leaves, names, (kind, specs)
    return None


def unflatten(leaves: Sequence[torch.Tensor], spec: Spec) -> Any:
    """The inverse of :func:`flatten`: rebuild the structure from its leaves in order."""
    it = iter(leaves)

    def build(s: Spec) -> Any:
        if s == "t":
            return next(it)
        kind, items = s
        parts = [(k, build(sub)) for k, sub in items]
        if kind == "dict":
            return dict(parts)
        values = [v for _, v in parts]
        return tuple(values) if kind == "tuple" else values

    return build(spec)


@dataclass
class ExplicitState:
    """The state a model's forward takes and returns, flattened into contract pairs."""

    param: str  # the forward's argument name (several: "h, c")
    spec: Spec
    names: list[str]  # per leaf: its place in the structure ("" for a lone tensor)
    batch_axes: list[int]
    init: list[torch.Tensor] = field(default_factory=list)  # per leaf, batch 1
    fed: list[bool] = field(default_factory=list)  # per proxy: its state comes from this one
    params: tuple[str, ...] = ()  # several state arguments: their names (spec is a dict)

    def split(self, out: Any) -> tuple[Any, list[torch.Tensor]]:
        """``(y part, state leaves)`` of one forward's return value."""
        n = len(self.params) or 1
        if not isinstance(out, (tuple, list)) or len(out) < n + 1:
            raise ExportError(
                f"model.forward returned {type(out).__name__}; with a {self.param!r} argument "
                f"it must return (y, {self.param}) every time."
            )
        flat = flatten(_state_part(out, self.params))
        if flat is None or flat[2] != self.spec:
            raise ExportError(
                f"model.forward returned a {self.param!r} of another structure than it takes; "
                "return the state in the structure forward accepts."
            )
        y = out[0] if len(out) == n + 1 else tuple(out[:-n])
        return y, flat[0]

    def state_keys(self) -> list[tuple[str, str]]:
        """``(path, name)`` of every leaf: ``(state, 0.1)``, or ``(h, "")`` for arguments."""
        if not self.params:
            return [(self.param, n) for n in self.names]
        return [(n.partition(".")[0], n.partition(".")[2]) for n in self.names]

    def args(self, leaves: Sequence[torch.Tensor]) -> list[Any]:
        """The forward's state arguments (after ``x``) rebuilt from ``leaves``."""
        return _as_args(unflatten(leaves, self.spec), self.params)

    def initial(self, batch: int) -> list[torch.Tensor]:
        """The initial state for ``batch`` rows, in leaf order."""
        out = []
        for t, ax in zip(self.init, self.batch_axes):
            shape = [-1] * t.dim()
            shape[ax] = batch
            out.append(t.expand(*shape).contiguous())
        return out


def _state_part(out: Sequence[Any], params: tuple[str, ...]) -> Any:
    """The state in a forward's return value: its last item, or one per state argument."""
    if not params:
        return out[-1]
    return dict(zip(params, out[-len(params) :]))


def _as_args(state: Any, params: tuple[str, ...]) -> list[Any]:
    return [state[p] for p in params] if params else [state]


def _positional(model: nn.Module) -> list[inspect.Parameter]:
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return []
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p for p in params if p.kind in positional]


def _state_params(params: list[inspect.Parameter]) -> tuple[str, ...]:
    """The arguments after ``x`` that default to None, when there are several in a row."""
    names = []
    for p in params[1:]:
        if p.default is not None:
            break
        names.append(p.name)
    return tuple(names) if len(names) > 1 else ()


def _batch_axis(a: torch.Tensor, b: torch.Tensor) -> int | None:
    """The axis that grew by one row between batch B (``a``) and B + 1 (``b``)."""
    if a.dim() != b.dim():
        return None
    grown = [i for i in range(a.dim()) if b.shape[i] == a.shape[i] + 1]
    same = all(b.shape[i] == a.shape[i] for i in range(a.dim()) if i not in grown)
    return grown[0] if len(grown) == 1 and same else None


def _agree(a: Any, b: Any) -> bool:
    fa, fb = flatten(a), flatten(b)
    if fa is None or fb is None or fa[2] != fb[2]:
        return False
    return all(u.shape == v.shape and torch.allclose(u, v, atol=1e-6) for u, v in zip(fa[0], fb[0]))


def find_explicit_state(
    inner: nn.Module,
    model: Callable[..., Any],
    x: torch.Tensor,
    received: Callable[[], list[tuple[torch.Tensor, ...] | None]],
    initials: Callable[[], list[tuple[torch.Tensor, ...] | None]],
) -> ExplicitState | None:
    """The explicit state of ``inner``, if ``forward(x, state=None)`` returns ``(y, state)``.

    ``model(*args)`` runs ``inner`` afresh; ``received()`` lists what each proxy was handed
    by the user's code in the last run, ``initials()`` what each started from: they map a
    learned initial state onto the leaves, and tell which proxies the state feeds.
    """
    params = _positional(inner)
    if len(params) < 2:
        return None
    param = params[1]
    if param.default is inspect.Parameter.empty:
        raise ExportError(
            f"model.forward takes a second argument {param.name!r} without a default. "
            f"edgeseq streams forward(x, {param.name}=None) -> (y, {param.name}): give it "
            "the default None, meaning the model's initial state."
        )
    several = _state_params(params)
    if several:  # forward(x, h=None, c=None) -> (y, h, c)
        try:
            found = _find(several, ", ".join(several), model, x, received, initials)
        except ExportError:
            found = None
        if found is not None:
            return found
    return _find((), param.name, model, x, received, initials)


def _find(
    params: tuple[str, ...],
    label: str,
    model: Callable[..., Any],
    x: torch.Tensor,
    received: Callable[[], list[tuple[torch.Tensor, ...] | None]],
    initials: Callable[[], list[tuple[torch.Tensor, ...] | None]],
) -> ExplicitState | None:
    """:func:`find_explicit_state` for one reading of the signature: ``params`` are the
    state arguments (empty: the second argument alone, named ``label``)."""
    n = len(params) or 1
    out = model(x)
    if not isinstance(out, (tuple, list)) or len(out) < n + 1:
        return None
    flat = flatten(_state_part(out, params))
    if flat is None:
        return None
    leaves, names, spec = flat
    if not leaves:
        return ExplicitState(label, spec, [], [], [], [False] * len(initials()), params)
    proxy_init = initials()
    bigger = model(torch.cat([x, x[:1]], dim=0))
    ok = isinstance(bigger, (tuple, list)) and len(bigger) >= n + 1
    grown = flatten(_state_part(bigger, params)) if ok else None
    if grown is None or grown[2] != spec:
        return None
    axes = [_batch_axis(a, b) for a, b in zip(leaves, grown[0])]
    for name, ax in zip(names, axes):
        if ax is None:
            raise ExportError(
                f"the {label!r} forward returns has a tensor {name or label!r} "
                "without a batch axis (none grows with the batch). Keep a batch axis on "
                "every state tensor."
            )
    g = torch.Generator().manual_seed(5)
    probe = [torch.randn(t.shape, generator=g, dtype=t.dtype) for t in leaves]

    def fed_with(leaves: list[torch.Tensor]) -> Any:
        return model(x, *_as_args(unflatten(leaves, spec), params))

    try:
        fed = fed_with(probe)
    except Exception as exc:
        raise ExportError(
            f"model.forward(x, {label}) failed when given back the {label!r} it "
            f"returned ({type(exc).__name__}: {exc}). It must accept its own returned state."
        ) from None
    if not isinstance(fed, (tuple, list)) or flatten(_state_part(fed, params)) is None:
        return None
    got = received()
    fed_with([t + 1 for t in probe])
    other = received()
    feeds = [
        a is not None and (b is None or any(not torch.equal(u, v) for u, v in zip(a, b)))
        for a, b in zip(got, other)
    ]
    # the initial state: zeros, or the tensors the layers were handed when state was None
    candidates = [[torch.zeros_like(t) for t in leaves]]
    mapped = []
    for leaf in probe:
        hit = next(
            (
                init[j].reshape(leaf.shape)
                for rec, init in zip(got, proxy_init)
                if rec is not None and init is not None
                for j, t in enumerate(rec)
                if t.numel() == leaf.numel() and torch.equal(t.reshape(-1), leaf.reshape(-1))
            ),
            None,
        )
        mapped.append(hit)
    if all(m is not None for m in mapped):
        candidates.append(mapped)  # type: ignore[arg-type]
    for cand in candidates:
        if _agree(fed_with(cand), out):  # type: ignore[arg-type]
            rows = [t.narrow(ax, 0, 1).clone() for t, ax in zip(cand, axes)]  # type: ignore[arg-type]
            return ExplicitState(label, spec, names, axes, rows, feeds, params)  # type: ignore[arg-type]
    raise ExportError(
        f"forward(x) with {label}=None does not start from zeros, nor from tensors it "
        f"hands its recurrent layers, so edgeseq cannot tell the stream's initial "
        f"{label!r}. Make {label}=None mean a constant initial state that the "
        "forward passes to its layers, or zeros."
    )
