"""Where the CLI's frames come from: input sources that yield numbered frames.

A source is an iterable, read lazily (so a live pipe is streamed as it arrives), of
:class:`Frame` (the values of one frame and where in the input they came from) and
:class:`BadRecord` (where, and what is wrong with it), in input order. A source never
decides what a bad record does: ``edgeseq stream`` stops there (``--on-error stop``) or
reports it and goes on (``--on-error skip``); :func:`read_all` stops. Problems that
concern the whole input (an unknown column, names without a header) raise
:class:`~edgeseq.errors.InputError` instead.

What a frame must look like comes from the model's contract, as a :class:`FrameLayout`.

Sources: :class:`CsvFrames`, delimited text lines from a file or stdin. Another input
kind (e.g. WAV or raw PCM samples) is another class yielding the same items, chosen in
:func:`open_frames`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from edgeseq.errors import InputError
from edgeseq.exact import inexact_bound, inexact_problem, largest_exact
from edgeseq.table import is_number

if TYPE_CHECKING:
    from edgeseq.contract import Contract

__all__ = ["BadRecord", "CsvFrames", "Frame", "FrameLayout", "open_frames", "read_all"]

_F32_MAX = float(np.finfo(np.float32).max)
_INTEGER = re.compile(r"[+-]?[0-9]+")  # a field written as an integer (JS: the same rule)


@dataclass(frozen=True)
class Frame:
    """One frame's values (``[F]`` float32, or a scalar for one-value models) and its origin."""

    values: np.ndarray
    where: str  # e.g. "line 12"; a message about this frame starts with it


@dataclass(frozen=True)
class BadRecord:
    """A piece of input that is not a frame, and why."""

    where: str
    problem: str

    @property
    def message(self) -> str:
        return f"{self.where}: {self.problem}"


@dataclass(frozen=True)
class FrameLayout:
    """What one frame of the model is: its value count and, if recorded, feature names.

    ``size`` is None for scalar frames (one value, a model input ``(batch, time)``) and 0
    when the model takes any count (a symbolic feature axis): then the first good frame
    fixes it.
    """

    size: int | None
    names: tuple[str, ...] | None = None
    # what the values are stored as on their way to the model: an integer field must
    # survive that cast (float16 for a float16 model, else the reader's float32)
    dtype: str = "float32"

    @classmethod
    def of(cls, contract: Contract) -> FrameLayout:
        trailing = contract.frames.shape[2:]
        if len(trailing) > 1:
            raise InputError(
                f"the model's frames are shaped {list(trailing)}; text input holds one row of "
                "numbers per frame, so it can feed models with [F] or scalar frames only"
            )
        names = contract.features
        size = None if not trailing else (trailing[0] if isinstance(trailing[0], int) else 0)
        if names is not None and size and len(names) != size:
            names = None  # names that do not fit the graph are not used to pick columns
        dtype = "float16" if contract.frames.dtype == "float16" else "float32"
        return cls(size, tuple(names) if names else None, dtype)

    def describe(self) -> str:
        if self.size is None:
            return "1 value per frame"
        what = f"{self.size} values per frame" if self.size else "the same count on every line"
        return what + (f" ({', '.join(self.names)})" if self.names else "")


class CsvFrames:
    """Frames from delimited text lines (bytes), one frame per line.

    Blank lines and lines starting with ``#`` are skipped. The first other line is a
    header when it is a line of names (no field is a number); any later line, and a
    first line with a number in it, is data and must be exactly right: every picked field
    a finite number, the same field count as the header (or as the model takes).

    Columns (``columns``: header names or 1-based positions, in the model's feature
    order): given, they are used; else, with a header, the model's recorded feature names
    are looked up in it; else every field is a value.
    """

    def __init__(
        self,
        lines: Iterable[bytes],
        layout: FrameLayout,
        *,
        delimiter: str = ",",
        columns: Sequence[str] = (),
    ) -> None:
        if not delimiter:
            raise InputError("the delimiter is empty; expected a character such as ',' or ';'")
        self.lines = lines
        self.layout = layout
        self.delimiter = "\t" if delimiter == "\\t" else delimiter  # -d '\t' as typed
        self.columns = [c.strip() for c in columns if c.strip()]
        self.assumed: str | None = None  # what the reader assumed (columns by position)
        self.header: list[str] | None = None
        self.pick: list[int] | None = None  # field indices fed, in order; None: all of them
        self.width: int | None = None  # fields per line, once known
        # values per frame, once known (scalar frames: 1; a symbolic axis: the first frame's)
        self.count = 1 if layout.size is None else (layout.size or None)
        self._exact = largest_exact(layout.dtype)  # integer fields up to this are exact
        self._cast = np.dtype(layout.dtype).type

    def __iter__(self) -> Iterator[Frame | BadRecord]:
        started = False
        for lineno, raw in enumerate(self.lines, start=1):
            where = f"line {lineno}"
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield BadRecord(
                    where,
                    f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at position {exc.start + 1}); "
                    "expected numbers separated by the delimiter",
                )
                continue
            text = text.lstrip("\ufeff").strip() if lineno == 1 else text.strip()
            if not text or text.startswith("#"):
                continue
            fields = [f.strip() for f in text.split(self.delimiter)]
            if not started:
                started = True
                if not any(is_number(f) for f in fields) and any(fields):
                    self._use_header(fields)
                    continue
                self._use_positions()
            yield self._parse(fields, where, text)

    # ------------------------------------------------------------------ columns
    def _delimiter_hint(self, fields: list[str]) -> str:
        """A header that is one field holding another separator: say which -d to pass."""
        if len(fields) != 1:
            return ""
        seen = [d for d in (";", "\t", "|", ",", " ") if d != self.delimiter and d in fields[0]]
        if not seen:
            return ""
        return f"; the line looks separated by {seen[0]!r}: pass -d {seen[0]!r}"

    def _use_header(self, fields: list[str]) -> None:
        self.header, self.width = fields, len(fields)
        if self.columns:
            self.pick = [self._column(c) for c in self.columns]
            self._check_order(fields)
        elif self.layout.names:
            missing = [n for n in self.layout.names if n not in fields]
            if missing:
                raise InputError(
                    f"the model was trained on columns {', '.join(self.layout.names)} (in this "
                    f"order); the input's header has {', '.join(fields)}, without "
                    f"{', '.join(missing)}. Name the columns to feed, in that order: "
                    f"--columns A,B,...{self._delimiter_hint(fields)}"
                )
            twice = [n for n in self.layout.names if fields.count(n) > 1]
            if twice:
                raise InputError(
                    f"the input's header names {twice[0]!r} {fields.count(twice[0])} times; "
                    "expected each of the model's columns once. Pick them by position: "
                    "--columns 1,2,..."
                )
            self.pick = [fields.index(n) for n in self.layout.names]
        elif self.count and len(fields) != self.count:
            raise InputError(
                f"the input's header has {len(fields)} columns ({', '.join(fields)}); the model "
                f"takes {self.layout.describe()}. Pick its columns in order: --columns A,B,..."
                f"{self._delimiter_hint(fields)}"
            )
        if self.pick is not None and self.count and len(self.pick) != self.count:
            raise InputError(
                f"--columns picks {len(self.pick)} columns; the model takes "
                f"{self.layout.describe()}"
            )

    def _check_order(self, fields: list[str]) -> None:
        """Refuse picked columns whose header names are the model's recorded feature names
        in another order: the model would read one feature as another."""
        names = self.layout.names
        if not names or self.pick is None:
            return
        for j, i in enumerate(self.pick):
            got = fields[i]
            if got in names and (j >= len(names) or names[j] != got):
                raise InputError(
                    f"--columns {','.join(self.columns)} feeds column {got!r} as the model's "
                    f"feature {j + 1}, but the model was trained with {got!r} as feature "
                    f"{names.index(got) + 1} (its order: {', '.join(names)}). Give the "
                    f"columns in that order: --columns {','.join(names)}"
                )

    def _use_positions(self) -> None:
        if not self.columns:
            if self.layout.names:
                self.assumed = (
                    "no header line: fields fed by position as the model's features "
                    f"{', '.join(self.layout.names)} (a header has them picked by name)"
                )
            return
        named = [c for c in self.columns if not c.isdigit()]
        if named:
            raise InputError(
                f"--columns {','.join(named)} names columns, but the input has no header line; "
                "give 1-based positions (e.g. --columns 2,3) or start the input with a header"
            )
        self.pick = [self._column(c) for c in self.columns]
        if self.count and len(self.pick) != self.count:
            raise InputError(
                f"--columns picks {len(self.pick)} columns; the model takes "
                f"{self.layout.describe()}"
            )

    def _column(self, name: str) -> int:
        if self.header is not None and name in self.header:
            return self.header.index(name)
        if name.isdigit() and int(name) >= 1 and (self.width is None or int(name) <= self.width):
            return int(name) - 1
        where = f"in the header ({', '.join(self.header)})" if self.header else "a position"
        hint = self._delimiter_hint(self.header or [])
        raise InputError(f"--columns {name}: not {where}; expected a column name or position{hint}")

    def _label(self, i: int) -> str:
        name = f" ({self.header[i]})" if self.header and i < len(self.header) else ""
        return f"field {i + 1}{name}"

    # ------------------------------------------------------------------ lines
    def _parse(self, fields: list[str], where: str, text: str) -> Frame | BadRecord:
        trailing = " (a trailing delimiter?)" if len(fields) > 1 and not fields[-1] else ""
        if self.width is not None and len(fields) != self.width:
            what = "the header's" if self.header else "the first line's"
            return BadRecord(
                where, f"expected {self.width} fields ({what} count), got {len(fields)}{trailing}"
            )
        if self.pick is None:
            idx = list(range(len(fields)))
            if self.count and len(idx) != self.count:
                hint = self._delimiter_hint(fields)
                return BadRecord(
                    where,
                    f"expected {self.layout.describe()}, got {len(idx)}{trailing}: "
                    f"{text[:80]!r}{hint}",
                )
        else:
            idx = self.pick
            if max(idx) >= len(fields):
                need = max(idx) + 1
                return BadRecord(where, f"expected at least {need} fields, got {len(fields)}")
        values = np.empty(len(idx), dtype=np.float32)
        for j, i in enumerate(idx):
            field = fields[i]
            if not field:
                return BadRecord(where, f"{self._label(i)} is empty{trailing}")
            try:
                v = float(field)
            except ValueError:
                return BadRecord(where, f"{self._label(i)}: {field[:40]!r} is not a number")
            if not abs(v) <= _F32_MAX:  # NaN, Inf, or beyond float32
                return BadRecord(
                    where,
                    f"{self._label(i)}: {field[:40]!r} is not a finite float32 number; one "
                    "such value would poison the stream's state",
                )
            if abs(v) > self._exact and _INTEGER.fullmatch(field):
                problem = self._inexact(field, v)
                if problem:
                    return BadRecord(where, f"{self._label(i)}: {problem}")
            values[j] = v
        if self.width is None and self.pick is not None:
            self.width = len(fields)  # positions without a header: the first good line's count
        if self.count is None:
            self.count = len(values)  # a symbolic feature axis: the first frame decides
        return Frame(values.reshape(()) if self.layout.size is None else values, where)

    def _inexact(self, field: str, v: float) -> str:
        """Why integer ``field`` (read as ``v``) cannot be fed exactly ("" if it can): the
        value stored is ``v`` cast to the layout's dtype (edgeseq/exact.py)."""
        value = int(field)
        with np.errstate(over="ignore"):
            becomes = float(self._cast(v))
        if np.isfinite(becomes) and int(becomes) == value:
            return ""
        dt = self.layout.dtype
        return (
            f"{field[:40]!r} is an integer that {dt} does not hold exactly "
            f"({inexact_bound(dt)}): "
            f"{inexact_problem(value, becomes, dt, f'it written as a float ({value}.0)')}"
        )


def read_all(frames: Iterable[Frame | BadRecord]) -> np.ndarray:
    """Every frame as one ``[T, F]`` (or ``[T]``) float32 array; the first bad record raises."""
    out = []
    for item in frames:
        if isinstance(item, BadRecord):
            raise InputError(item.message)
        out.append(item.values)
    if not out:
        raise InputError("the input holds no frames (only blank lines, comments or a header)")
    return np.stack(out)


@contextmanager
def open_frames(
    path: str,
    layout: FrameLayout,
    *,
    delimiter: str = ",",
    columns: Sequence[str] = (),
) -> Iterator[CsvFrames]:
    """The frames of ``path`` (``-``: stdin), read lazily; the file is closed on exit."""
    if path == "-":
        yield CsvFrames(_lines(sys.stdin.buffer), layout, delimiter=delimiter, columns=columns)
        return
    try:
        fh = open(path, "rb")  # noqa: SIM115 (closed below, after the caller has streamed)
    except FileNotFoundError:
        raise InputError(
            f"input file {path!r} does not exist; expected a CSV file of frames, or '-' to "
            "read stdin"
        ) from None
    except (IsADirectoryError, PermissionError) as exc:
        raise InputError(f"cannot read input file {path!r}: {exc.strerror}") from None
    try:
        yield CsvFrames(_lines(fh), layout, delimiter=delimiter, columns=columns)
    finally:
        fh.close()


def _lines(fh: BinaryIO) -> Iterator[bytes]:
    """Lines as they arrive: ``readline`` returns as soon as a pipe delivers a newline."""
    return iter(fh.readline, b"")
