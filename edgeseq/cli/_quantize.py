"""edgeseq quantize: an int8 or fp16 copy of an exported model, and what it trades."""

from __future__ import annotations

from collections.abc import Sequence

import click

__all__ = ["command", "load_frames"]


def load_frames(path: str, model: str, columns: Sequence[str] = (), delimiter: str = ","):
    """Held-out frames from ``.npy`` (``[T, F]`` or ``[N, T, F]``) or a CSV file (one frame
    a line, read as ``edgeseq stream`` reads it: a header, columns by name or position)."""
    import numpy as np

    from edgeseq.cli._frames import FrameLayout, open_frames, read_all
    from edgeseq.errors import InputError
    from edgeseq.runtime.discover import read_contract

    if path.endswith(".npy"):
        if columns:
            raise InputError("--columns picks CSV columns; a .npy file has none to pick")
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(
                f"cannot read held-out frames from {path!r} ({exc}); expected a .npy array "
                "[T, F] or [N, T, F], or a CSV file of numbers, one frame per row."
            ) from None
    layout = FrameLayout.of(read_contract(model)[0])
    with open_frames(path, layout, delimiter=delimiter, columns=columns) as frames:
        try:
            return read_all(frames)
        except InputError as exc:
            raise InputError(f"--data {path}: {exc}") from None


@click.command("quantize")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="Output file.")
@click.option("--int8", "kind", flag_value="int8", help="Dynamic int8 (onnxruntime).")
@click.option("--fp16", "kind", flag_value="fp16", help="float16 weights and math, float32 I/O.")
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False),
    help="Held-out frames (.npy [T,F] or [N,T,F], or CSV as `edgeseq stream` reads it) for "
    "the accuracy comparison; default: synthetic frames.",
)
@click.option(
    "--columns",
    default="",
    help="--data CSV: columns to use, in the model's feature order (names or 1-based "
    "positions). Default: the recorded feature names when the CSV has a header.",
)
def command(model: str, out: str, kind: str | None, data: str | None, columns: str) -> None:
    """Write an int8 (--int8) or fp16 (--fp16) copy of MODEL and compare it with fp32.

    The state contract is carried into OUT, so it streams like MODEL. The report gives
    file size, per-frame latency (one thread) and the difference from fp32 outputs.

    \b
    Examples:
      edgeseq quantize model.onnx -o model.int8.onnx --int8
      edgeseq quantize model.onnx -o model.fp16.onnx --fp16 --data held_out.npy
      edgeseq quantize model.onnx -o model.int8.onnx --int8 --data log.csv --columns temp,rh
    """
    from edgeseq.cli._paths import refuse_overwriting_an_input
    from edgeseq.exporters.quantize import quantize

    if kind is None:
        raise click.UsageError("choose --int8 or --fp16")
    refuse_overwriting_an_input(out, MODEL=model, **{"--data": data})
    picked = [c for c in columns.split(",") if c.strip()]
    if picked and not data:
        raise click.UsageError("--columns goes with --data (a CSV of held-out frames)")
    frames = load_frames(data, model, picked) if data else None
    report = quantize(model, out, kind, held_out=frames)  # type: ignore[arg-type]
    click.echo(report.table())
