"""edgeseq quantize: an int8 or fp16 copy of an exported model, and what it trades."""

from __future__ import annotations

import click

__all__ = ["command", "load_frames"]


def load_frames(path: str):
    """Held-out frames from ``.npy`` (``[T, F]`` or ``[N, T, F]``) or ``.csv`` (one frame a row)."""
    import numpy as np

    from edgeseq.errors import InputError

    try:
        if path.endswith(".npy"):
            return np.load(path, allow_pickle=False)
        return np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
    except (OSError, ValueError) as exc:
        raise InputError(
            f"cannot read held-out frames from {path!r} ({exc}); expected a .npy array or "
            "a CSV file of numbers, one frame per row."
        ) from None


@click.command("quantize")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="Output file.")
@click.option("--int8", "kind", flag_value="int8", help="Dynamic int8 (onnxruntime).")
@click.option("--fp16", "kind", flag_value="fp16", help="float16 weights and math, float32 I/O.")
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False),
    help="Held-out frames (.npy [T,F] or [N,T,F], or CSV) for the accuracy comparison; "
    "default: synthetic frames.",
)
def command(model: str, out: str, kind: str | None, data: str | None) -> None:
    """Write an int8 (--int8) or fp16 (--fp16) copy of MODEL and compare it with fp32.

    The state contract is carried into OUT, so it streams like MODEL. The report gives
    file size, per-frame latency (one thread) and the difference from fp32 outputs.

    \b
    Examples:
      edgeseq quantize model.onnx -o model.int8.onnx --int8
      edgeseq quantize model.onnx -o model.fp16.onnx --fp16 --data held_out.npy
    """
    from edgeseq.exporters.quantize import quantize

    if kind is None:
        raise click.UsageError("choose --int8 or --fp16")
    frames = load_frames(data) if data else None
    report = quantize(model, out, kind, held_out=frames)  # type: ignore[arg-type]
    click.echo(report.table())
