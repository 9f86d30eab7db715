"""edgeseq inspect: what a model takes, returns and carries; store a discovered contract."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from edgeseq.contract import Contract
    from edgeseq.runtime import Discovery

__all__ = ["command", "describe_model", "with_windows", "write_contract"]


def describe_model(
    path: str, contract: Contract | None = None, found: Discovery | None = None
) -> str:
    """The report ``edgeseq inspect`` prints: facts, tensor table, op histogram, size."""
    from edgeseq.runtime.discover import read_contract
    from edgeseq.table import format_table

    if contract is None:
        contract, found = read_contract(path)
    c = contract
    m = c.model
    lines = [f"{path}  ({Path(path).stat().st_size / 1024:.1f} KiB)"]
    if found is not None:
        head = (
            "no edgeseq contract in this file; discovered by shape (store it with "
            "--write-contract OUT.onnx, or name pairs with --state IN:OUT):"
        )
        if not found.discovered:  # the caller named the pairs with --state
            head = (
                "this file's own edgeseq contract is set aside: the state is the --state "
                "pairs given (drop --state to use the file's contract):"
                if _has_contract(path)
                else "no edgeseq contract in this file; the state is the --state pairs given "
                "(store it with --write-contract OUT.onnx):"
            )
        lines += ["", head, found.report(), ""]
    facts = [
        ("cell", m.cell),
        ("layers", m.layers),
        ("hidden size", m.hidden_size),
        ("topology", m.topology),
        ("task", m.task),
        # an offline graph is built with native ops; what it does is whole sequences
        ("export mode", m.mode if m.stateful else f"offline ({m.mode} ops, whole sequences)"),
        ("stateful", m.stateful),
        ("chunk", m.chunk or "any"),
        ("one-step graph", (m.extra.get("step_model") or {}).get("file")),
        ("left context", m.extra.get("context")),
        ("window", m.extra.get("window")),
        ("sample rate", m.extra.get("rate")),
        ("features", ", ".join(c.features) if c.features else None),
        ("exporter", c.producer.get("exporter", "?")),
        ("contract", f"v{c.version} {c.hash()}"),
    ]
    lines.append(format_table(["fact", "value"], [(k, v) for k, v in facts if v is not None]))
    rows = []
    for t in c.inputs:
        rows.append(("input", t.name, t.shape, t.dtype, "frames"))
    if c.lengths:
        rows.append(("input", c.lengths, ["batch"], "int32", "valid frames per row"))
    for name in c.constants:
        rows.append(("input", name, "", "", "constant: pass constants={...}"))
    for s in c.states:
        init = s.init if isinstance(s.init, str) else "constant"
        note = "per-stream memory, set at start" if s.input in c.memory else f"init {init}"
        rows.append(("state", f"{s.input} -> {s.output}", s.shape, s.dtype, note))
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


def write_contract(model: str, out: str, contract: Contract) -> Path:
    """Copy ``model`` to ``out`` with ``contract`` in its metadata (atomic write)."""
    import onnx

    from edgeseq.contract import METADATA_KEY
    from edgeseq.runtime.snapshot import atomic_write

    if Path(out).resolve() == Path(model).resolve():
        raise click.ClickException(
            f"--write-contract {out!r} is the model itself; expected a new file name, so the "
            "original stays untouched. E.g. --write-contract model.edgeseq.onnx"
        )
    proto = onnx.load(model)
    props = {p.key: p.value for p in proto.metadata_props}
    props[METADATA_KEY] = contract.to_json()
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    return atomic_write(out, proto.SerializeToString())


def _pairs(values: tuple[str, ...]) -> dict | None:
    """``--state IN:OUT[:SHAPE]`` (also ``IN=OUT``) -> ``{IN: OUT or StatePair}``.

    SHAPE is comma-separated sizes with ``batch`` for the batch axis, e.g. ``2,batch,128``.
    """
    from edgeseq.contract import StatePair

    if not values:
        return None
    pairs: dict = {}
    for v in values:
        parts = v.split(":") if ":" in v else v.split("=")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise click.BadParameter(
                f"expected IN:OUT or IN:OUT:SHAPE (e.g. state:stateN:2,batch,128), got {v!r}",
                param_hint="--state",
            )
        if len(parts) == 2:
            pairs[parts[0]] = parts[1]
            continue
        dims = [d.strip() for d in parts[2].split(",")]
        if not all(d.isdigit() or d == "batch" for d in dims) or dims.count("batch") > 1:
            raise click.BadParameter(
                f"SHAPE of {v!r}: expected comma-separated sizes with at most one 'batch', "
                f"got {parts[2]!r}",
                param_hint="--state",
            )
        shape = [int(d) if d.isdigit() else d for d in dims]
        axis = shape.index("batch") if "batch" in shape else None
        pairs[parts[0]] = StatePair(parts[0], parts[1], shape, axis)
    return pairs


def _has_contract(path: str) -> bool:
    """Whether the file's metadata holds an edgeseq contract (read by onnxruntime)."""
    import onnxruntime as ort

    from edgeseq.contract import METADATA_KEY

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return METADATA_KEY in session.get_modelmeta().custom_metadata_map


def with_windows(
    contract: Contract, context: int | None, window: int | None, rate: int | None = None
) -> Contract:
    """``contract`` with ``context``/``window``/sample ``rate`` stored in its model facts."""
    extra = dict(contract.model.extra)
    if rate is not None:
        extra["rate"] = rate
    if context is not None:
        extra["context"] = context
    if window is not None:
        extra["window"] = window
    return dataclasses.replace(contract, model=dataclasses.replace(contract.model, extra=extra))


@click.command("inspect")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the contract as JSON.")
@click.option(
    "--write-contract",
    "out",
    type=click.Path(dir_okay=False),
    help="Write a copy of MODEL with the shown (e.g. discovered) contract stored in it.",
)
@click.option(
    "--state",
    "states",
    multiple=True,
    help="Name a state pair IN:OUT, or IN:OUT:SHAPE (e.g. state:stateN:2,batch,128). Repeatable.",
)
@click.option(
    "--constant",
    "constants",
    multiple=True,
    help="An input fed unchanged every call, NAME=VALUE (e.g. sr=16000) or NAME. Repeatable.",
)
@click.option("--context", type=click.IntRange(min=0), help="Store N frames of left context.")
@click.option(
    "--window", type=click.IntRange(min=1), help="Store N new samples per call (fixed windows)."
)
@click.option(
    "--rate", type=click.IntRange(min=1), help="Store the sample rate audio is resampled to."
)
def command(
    model: str,
    as_json: bool,
    out: str | None,
    states: tuple[str, ...],
    constants: tuple[str, ...],
    context: int | None,
    window: int | None,
    rate: int | None,
) -> None:
    """Show MODEL's contract: inputs, outputs and state pairs, model facts, op types, size.

    A model that edgeseq did not export has no contract: its state pairs are discovered
    by shape (an input and an output of the same shape with a symbolic batch axis) and
    shown, or named with --state. --write-contract stores the result in a copy, which
    then loads with StreamingPredictor(OUT) without naming anything (values of constant
    inputs such as a sample rate are still passed with constants=).

    \b
    Examples:
      edgeseq inspect model.onnx
      edgeseq inspect model.onnx --json | jq .states
      edgeseq inspect silero_vad.onnx --constant sr=16000 --context 64 --window 512 \\
          --write-contract vad.onnx
      edgeseq inspect other.onnx --state h0:hn --state c0:cn --write-contract ok.onnx
    """
    from edgeseq.cli._options import constants_option
    from edgeseq.runtime.discover import read_contract

    contract, found = read_contract(
        model, state=_pairs(states), constants=constants_option(constants)
    )
    contract = with_windows(contract, context, window, rate)
    if as_json:
        click.echo(json.dumps(contract.to_dict(), indent=2))
    else:
        click.echo(describe_model(model, contract, found))
    if out:
        path = write_contract(model, out, contract)
        click.echo(f"wrote {path} with contract {contract.hash()}", err=as_json)
