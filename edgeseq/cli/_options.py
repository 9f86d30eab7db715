"""Option blocks several commands share, and the check between options they share.

click applies option decorators from the bottom up; :func:`options` stacks several as one
decorator, so a block declared here lists in ``--help`` exactly as if each command
declared its options itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

__all__ = ["PREDICTOR_OPTIONS", "constants_option", "only_with", "options"]

F = TypeVar("F", bound=Callable[..., Any])


def options(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Several option decorators as one; ``--help`` lists them in the order given."""

    def apply(f: F) -> F:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply


# how a local StreamingPredictor runs: `edgeseq stream` and `edgeseq generate`
PREDICTOR_OPTIONS = options(
    click.option(
        "--device", default="cpu", show_default=True, help="cpu, cuda, or a provider name."
    ),
    click.option(
        "--threads",
        type=click.IntRange(1),
        default=1,
        show_default=True,
        help="onnxruntime threads.",
    ),
)


def only_with(
    flag: str,
    names: Sequence[str],
    message: str = "{option} works with {flag} only; add {flag}.",
) -> None:
    """Refuse the first of the current command's options ``names`` (parameter names) whose
    value differs from its declared default: it means something only with ``flag``, which
    the caller found off. The message names the option (``{option}``) and ``{flag}``."""
    ctx = click.get_current_context()
    declared = {p.name: p for p in ctx.command.params}
    for name in names:
        param = declared[name]
        given = ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
        if given and ctx.params[name] != param.default:  # `--replicas 2` is still the default
            raise click.UsageError(message.format(option=param.opts[0], flag=flag))


def constants_option(values: Sequence[str], *, need_values: bool = False) -> dict[str, Any]:
    """The ``--constant`` values of ``edgeseq inspect``, ``stream`` and ``triton``, by name.

    ``NAME=VALUE`` gives a number (``sr=16000``; a float when it has ``.``, ``e`` or
    ``E``) or comma-separated numbers (``bias=0.5,1.5``, a 1-D array); ``NAME`` alone
    declares a constant input without a value (``None``), which ``need_values`` refuses:
    a command that feeds or bakes the value needs it. Errors are click's, on --constant.
    """
    import numpy as np

    out: dict[str, Any] = {}
    for v in values:
        name, sep, text = v.partition("=")
        if not name:
            raise click.BadParameter(f"expected NAME=VALUE, got {v!r}", param_hint="--constant")
        if not sep:
            if need_values:
                raise click.BadParameter(
                    f"{name} needs a value: NAME=VALUE", param_hint="--constant"
                )
            out[name] = None
            continue
        try:
            nums = [float(t) if any(c in t for c in ".eE") else int(t) for t in text.split(",")]
        except ValueError:
            raise click.BadParameter(
                f"expected NAME=VALUE with a number (e.g. sr=16000), got {v!r}",
                param_hint="--constant",
            ) from None
        out[name] = np.array(nums[0] if len(nums) == 1 else nums)
    return out
