"""Options that travel together: one frozen dataclass, or the keywords it replaced.

A public function whose options became a dataclass (:class:`~edgeseq.runtime.Sampling`,
:class:`~edgeseq.runtime.LoadOptions`, :class:`~edgeseq.exporters.ExportOptions`) still
takes the old keywords; :func:`one_place` settles which form the caller used.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

__all__ = ["one_place"]

T = TypeVar("T")


def one_place(
    cls: type[T],
    given: T | None,
    keywords: dict[str, Any],
    error: type[Exception],
    param: str = "options",
) -> T:
    """``given`` (passed as ``param=``), or the ``cls`` the old ``keywords`` make.

    ``keywords`` are the values of the function's old keyword arguments, whose defaults
    are the dataclass's. They are checked either way (a bad keyword is refused even beside
    ``given``); one not at its default beside ``given`` is refused naming both forms,
    since nothing says which of the two the caller meant.
    """
    made = cls(**keywords)
    if given is None:
        return made
    if not isinstance(given, cls):
        article = "an" if cls.__name__[0] in "AEIOU" else "a"
        raise error(
            f"{param} must be {article} {cls.__name__}(...) or None, got {type(given).__name__}."
        )
    moved = [
        f.name
        for f in fields(cls)
        if f.name in keywords and getattr(made, f.name) != f.default  # type: ignore[arg-type]
    ]
    if moved:
        raise error(
            f"got {param}= and also {', '.join(f'{n}=' for n in moved)}; expected each "
            f"option in one place: put {', '.join(moved)} into the {cls.__name__} "
            f"(dataclasses.replace({param}, {moved[0]}=...)), or drop {param}=."
        )
    return given
