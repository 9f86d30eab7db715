"""edgeseq stream: frames in (CSV file or stdin), one output line per frame out, as they come."""

from __future__ import annotations

import json
import sys
from typing import TextIO

import click

__all__ = ["command", "stream_lines"]


def _parse(line: str, delimiter: str, lineno: int) -> list[float] | None:
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    try:
        return [float(v) for v in text.split(delimiter)]
    except ValueError:
        if lineno == 1:  # a header row
            return None
        raise click.ClickException(
            f"line {lineno}: expected {delimiter!r}-separated numbers, got {text[:60]!r}"
        ) from None


def stream_lines(
    predictor,
    source: TextIO,
    out: TextIO,
    *,
    delimiter: str = ",",
    fmt: str = "csv",
    precision: int = 6,
) -> int:
    """Feed each CSV line of ``source`` as one frame; write one output line per frame.

    Returns the number of frames streamed. Output is flushed after every line so the
    command works at the end of a live pipe.
    """
    labels = predictor.contract.model.labels
    n = 0
    for lineno, line in enumerate(iter(source.readline, ""), start=1):
        frame = _parse(line, delimiter, lineno)
        if frame is None:
            continue
        y = predictor.step(frame)
        values = y if not isinstance(y, dict) else next(iter(y.values()))
        flat = [round(float(v), precision) for v in getattr(values, "flat", [values])]
        n += 1
        if fmt == "json":
            rec: dict = {"frame": n, "output": flat}
            if labels and len(flat) == len(labels):
                rec["label"] = labels[max(range(len(flat)), key=flat.__getitem__)]
            out.write(json.dumps(rec) + "\n")
        else:
            text = delimiter.join(repr(v) for v in flat)
            if labels and len(flat) == len(labels):
                text += delimiter + labels[max(range(len(flat)), key=flat.__getitem__)]
            out.write(text + "\n")
        out.flush()
    return n


@click.command("stream")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "-i",
    "--input",
    "source",
    type=click.File("r"),
    default="-",
    show_default=True,
    help="CSV file of frames, one per line ('-' reads stdin).",
)
@click.option("-d", "--delimiter", default=",", show_default=True, help="Field separator.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    default="csv",
    show_default=True,
    help="Output line format.",
)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, or a provider name.")
@click.option("--threads", type=int, default=1, show_default=True, help="onnxruntime threads.")
def command(
    model: str, source: TextIO, delimiter: str, fmt: str, device: str, threads: int
) -> None:
    """Stream frames through MODEL, printing one output line per frame as it arrives.

    Each input line is one frame: its feature values separated by the delimiter (a
    header line and lines starting with # are skipped). The model's state is carried
    from line to line, so this works at the end of a live pipe.

    \b
    Examples:
      edgeseq stream model.onnx -i held_out.csv
      tail -f /var/log/imu.csv | edgeseq stream model.onnx --format json
    """
    from edgeseq.runtime import StreamingPredictor

    predictor = StreamingPredictor(model, device=device, threads=threads)
    n = stream_lines(predictor, source, sys.stdout, delimiter=delimiter, fmt=fmt)
    click.echo(f"# {n} frames streamed", err=True)
