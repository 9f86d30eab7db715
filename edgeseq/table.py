"""Tables as text: written (plain-text and markdown, for inspect, verify and bench output)
and read (:func:`is_number`, the test a CSV field passes to be a value, not a name)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["format_table", "is_number"]


def _cell(v: Any) -> str:
    if isinstance(v, float):
        if v == 0:
            return "0"
        return f"{v:.3g}" if abs(v) < 1e-3 or abs(v) >= 1e5 else f"{v:.4g}"
    return str(v)


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], markdown: bool = False
) -> str:
    """Align ``rows`` under ``headers``; ``markdown=True`` gives a GitHub table."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    if markdown:
        line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
        sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
        return "\n".join([line(headers), sep, *(line(r) for r in cells)])
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep, *(line(r) for r in cells)])


def is_number(text: str) -> bool:
    """Whether ``text`` (a CSV field) reads as a number, as ``float`` reads it: ``nan``
    and ``inf`` do, so a caller that needs finite values checks them itself."""
    try:
        float(text)
    except ValueError:
        return False
    return True
