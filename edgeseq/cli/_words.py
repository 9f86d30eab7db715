"""The library's errors in the CLI's words.

Library messages name Python keywords (``device='cpu'``, ``constants['sr']``,
``window=512``) because the Python API is what raises them. A CLI user has flags, so
every library error the CLI prints passes through :func:`cli_words`, which rewrites
each keyword spelling in :data:`API_TO_CLI` into the flag that sets it. One table for
every command: a new keyword that reaches the CLI gets a row here.
"""

from __future__ import annotations

import re

__all__ = ["API_TO_CLI", "cli_words"]


def _constant_value(m: re.Match[str]) -> str:
    names = re.findall(r"'([^']*)'", m[1])
    return "--constant " + " --constant ".join(f"{n}=VALUE" for n in names)


# (Python spelling, CLI spelling): applied in order, each to the whole message
API_TO_CLI: tuple[tuple[re.Pattern[str], object], ...] = (
    (re.compile(r"\bstate\[('[^']*')\]"), r"--state \1"),
    (re.compile(r"\bconstants\[('[^']*')\]"), r"--constant \1"),
    (re.compile(r"\bconstants=\{(.*?): value\}"), _constant_value),
    (
        re.compile(r"Pass e\.g\. np\.array\(value, dtype=np\.\w+\)\.reshape\((\[[^\]]*\])\)\."),
        r"Give --constant NAME=V1,V2,... with the values of that shape \1.",
    ),
    (re.compile(r"Pass e\.g\. np\.array\(value, dtype=np\.(\w+)\)\."), r"Give a value of type \1."),
    (re.compile(r"\bdevice='([^']*)'"), r"--device \1"),
    (re.compile(r"\bwindow=(\w+)"), r"--window \1"),
    (re.compile(r"\bcontext=(\d+)"), r"--context \1"),
    (re.compile(r"\(and context=\)"), "(and --context N)"),
    (  # "offline=True (CLI: --offline; whole ...)": the Python spelling dropped
        re.compile(r"\b\w+=[^\s(]* \(CLI: (--[\w-]+(?: [^;)]+)?)(?:; ([^)]*))?\)"),
        lambda m: m[1] + (f" ({m[2]})" if m[2] else ""),
    ),
    (  # "top_k must be ...": a keyword argument's check, named as its flag
        re.compile(r"^(stop|max_tokens|temperature|top_k|top_p|seed|threads)(?= must)"),
        lambda m: "--" + m[1].replace("_", "-"),
    ),
)


def cli_words(message: str) -> str:
    """``message`` with every Python keyword spelling replaced by its CLI flag."""
    for pattern, replacement in API_TO_CLI:
        message = pattern.sub(replacement, message)  # type: ignore[arg-type]
    return message
