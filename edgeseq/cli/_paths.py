"""Output paths checked before a command does any work."""

from __future__ import annotations

import os
from pathlib import Path

import click

__all__ = ["refuse_overwriting_an_input"]


def refuse_overwriting_an_input(out: str | None, **inputs: str | None) -> None:
    """A usage error when ``out`` (the ``-o`` file) is one of ``inputs`` (flag -> path):
    writing it would destroy what the command reads."""
    if not out:
        return
    target = Path(out)
    for flag, path in inputs.items():
        if not path:
            continue
        both = target.exists() and Path(path).exists()  # then links and hard links count
        same = target.samefile(path) if both else os.path.abspath(path) == os.path.abspath(out)
        if not same:
            continue
        raise click.UsageError(
            f"-o {out} is {flag} itself, which writing it would destroy; expected a new "
            f"file name such as {target.with_stem(target.stem + '.out')}"
        )
