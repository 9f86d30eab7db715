"""edgeseq inspect: what a model takes, returns and carries."""

from __future__ import annotations

import json
from pathlib import Path

import click

__all__ = ["command", "describe_model"]


def describe_model(path: str) -> str:
    """The report ``edgeseq inspect`` prints: facts, tensor table, op histogram, size."""
    from edgeseq.runtime import StreamingPredictor
    from edgeseq.table import format_table

    p = StreamingPredictor(path)
    c = p.contract
    m = c.model
    lines = [f"{path}  ({Path(path).stat().st_size / 1024:.1f} KiB)"]
    facts = [
        ("cell", m.cell),
        ("layers", m.layers),
        ("hidden size", m.hidden_size),
        ("topology", m.topology),
        ("task", m.task),
        ("export mode", m.mode),
        ("stateful", m.stateful),
        ("chunk", m.chunk or "any"),
        ("exporter", c.producer.get("exporter", "?")),
        ("contract", f"v{c.version} {c.hash()}"),
    ]
    lines.append(format_table(["fact", "value"], [(k, v) for k, v in facts if v is not None]))
    rows = []
    for t in c.inputs:
        rows.append(("input", t.name, t.shape, t.dtype, "frames"))
    if c.lengths:
        rows.append(("input", c.lengths, ["batch"], "int32", "valid frames per row"))
    for s in c.states:
        rows.append(
            (
                "state",
                f"{s.input} -> {s.output}",
                s.shape,
                s.dtype,
                "init " + (s.init if isinstance(s.init, str) else "constant"),
            )
        )
    for t in c.data_outputs():
        rows.append(("output", t.name, t.shape, t.dtype, ""))
    lines += ["", format_table(["kind", "name", "shape", "dtype", "note"], rows)]
    prep = c.preprocessing
    notes = []
    if prep.mean is not None:
        notes.append(f"input normalised with {len(prep.mean)} feature means/stds")
    if prep.out_mean is not None:
        notes.append("output de-normalised")
    if prep.vocab:
        notes.append(f"vocabulary of {len(prep.vocab)} tokens")
    if m.labels:
        notes.append(f"labels: {', '.join(m.labels)}")
    if notes:
        lines += ["", "preprocessing: " + "; ".join(notes)]
    try:
        import onnx

        from edgeseq.exporters._onnx import op_histogram

        if Path(path).suffix != ".ort":
            ops = op_histogram(onnx.load(path, load_external_data=False))
            lines += ["", format_table(["op", "count"], list(ops.items()))]
    except ModuleNotFoundError:
        lines += ["", "(op histogram needs the onnx package: pip install 'edgeseq[torch]')"]
    return "\n".join(lines)


@click.command("inspect")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the raw contract as JSON.")
def command(model: str, as_json: bool) -> None:
    """Show MODEL's contract: inputs, outputs and state pairs, model facts, op types, size.

    \b
    Examples:
      edgeseq inspect model.onnx
      edgeseq inspect model.onnx --json | jq .states
    """
    if as_json:
        from edgeseq.runtime import StreamingPredictor

        click.echo(json.dumps(StreamingPredictor(model).contract.to_dict(), indent=2))
        return
    click.echo(describe_model(model))
