"""The ways a user's model can stream, as small declarative records in one explicit table.

A style says which modules it stands in for and with which proxy (see ``_proxy.py``);
the adapter, the export algorithm, ``explain`` and the tests read this table and nothing
else, so a new style is one record and one proxy class.

==============  ===========================================  =============================
style           what the user wrote                           streamed as
==============  ===========================================  =============================
recurrent       nn.RNN / nn.LSTM / nn.GRU layers              their (h[, c]) as state pairs
cell_loop       nn.RNNCell / LSTMCell / GRUCell in a loop     the loop body is the step
conv_cache      causal nn.Conv1d / nn.Conv2d over time        a cache of past input frames
explicit_state  forward(x, state=None) -> (y, state)          the state argument as pairs
==============  ===========================================  =============================
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from edgeseq.errors import ExportError
from edgeseq.exporters._cellloop import CellProxy
from edgeseq.exporters._convcache import ConvCacheProxy
from edgeseq.exporters._proxy import StreamProxy
from edgeseq.exporters._recurrent import RecurrentProxy

__all__ = ["STYLES", "Style", "get_style", "proxy_for", "register_style"]


@dataclass(frozen=True)
class Style:
    """One way a model streams: the modules it claims, its proxy, and what it refuses."""

    name: str
    modules: tuple[type[nn.Module], ...]  # empty: a property of forward's signature
    proxy: type[StreamProxy] | None
    written: str  # what the user wrote
    streamed: str  # how it streams
    refused: str  # what of it cannot stream, and the way out
    cells: tuple[str, ...] = ("rnn", "lstm", "gru")  # cells it is used with (each one tested)


STYLES: dict[str, Style] = {}


def register_style(style: Style, *, overwrite: bool = False) -> Style:
    """Add ``style`` to :data:`STYLES`; refuse to replace one silently or to claim a
    module type another style already claims."""
    if style.name in STYLES and not overwrite:
        raise ExportError(
            f"stream style {style.name!r} is already registered; pass overwrite=True to replace it"
        )
    for other in STYLES.values():
        shared = {
            a for a in style.modules for b in other.modules if issubclass(a, b) or issubclass(b, a)
        }
        if other.name != style.name and shared:
            names = sorted(t.__name__ for t in shared)
            raise ExportError(f"style {style.name!r} claims {names}, already {other.name!r}'s")
    STYLES[style.name] = style
    return style


def get_style(name: str) -> Style:
    """Look up a style by name; the error lists the registered styles."""
    try:
        return STYLES[name]
    except KeyError:
        raise ExportError(f"unknown stream style {name!r}; registered: {sorted(STYLES)}") from None


def proxy_for(module: nn.Module) -> type[StreamProxy] | None:
    """The proxy class of the style that claims ``module``'s type, or None."""
    for style in STYLES.values():
        if style.proxy is not None and isinstance(module, style.modules):
            return style.proxy
    return None


# the built-in styles, registered in this order (proxy_for tries them in it)
_BUILT_IN = (
    Style(
        name="recurrent",
        modules=(nn.RNNBase,),
        proxy=RecurrentProxy,
        written="nn.RNN / nn.LSTM / nn.GRU layers, any state passed or none",
        streamed="native ONNX LSTM/GRU/RNN ops, or unrolled cells; (h[, c]) as state pairs",
        refused="bidirectional layers (offline only); LSTM proj_size in native mode "
        "(exported unrolled when no mode is asked for)",
    ),
    Style(
        name="cell_loop",
        modules=(nn.RNNCellBase,),
        proxy=CellProxy,
        written="nn.RNNCell / LSTMCell / GRUCell stepped in `for t in range(T)`",
        streamed="the loop body is the step: native one-frame graph, or the chunk unrolled",
        refused="a cell not stepped once per frame, or a loop that changes h between steps "
        "(carry it with forward(x, state) instead)",
    ),
    Style(
        name="conv_cache",
        modules=(nn.Conv1d, nn.Conv2d),
        proxy=ConvCacheProxy,
        written="causal convolutions over time: F.pad(x, ((k-1)*d, 0)), or padding=(k-1)*d "
        "and the tail dropped; dilated, stacked",
        streamed="a cache of the last (k-1)*d input frames as one more state pair",
        refused="centered or unpadded convolutions over time (they look ahead: offline "
        "only); stride over time; non-zero padding",
    ),
    Style(
        name="explicit_state",
        modules=(),
        proxy=None,
        written="forward(x, state=None) -> (y, state); a tensor, tuples, lists or dicts; "
        "or forward(x, h=None, c=None) -> (y, h, c)",
        streamed="every tensor of the state as a pair named after its place (state_in.state.0.1)",
        refused="a state argument without a default, or a state without a batch axis",
    ),
)
for _style in _BUILT_IN:
    register_style(_style)
