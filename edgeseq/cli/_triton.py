"""edgeseq triton: a Triton Inference Server model repository for a streaming model."""

from __future__ import annotations

import click

__all__ = ["command"]


@click.command("triton")
@click.argument("model", required=False, type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--out",
    "repository",
    type=click.Path(file_okay=False),
    help="The model repository folder to write into (created if missing).",
)
@click.option("--name", help="Model name (a folder of the repository); default: MODEL's stem.")
@click.option(
    "--backend",
    type=click.Choice(["onnxruntime", "python"]),
    default="onnxruntime",
    show_default=True,
    help="onnxruntime: the graph rewritten for Triton's implicit state (NVIDIA's container). "
    "python: model.py steps an edgeseq StreamPool (any Triton with the python backend).",
)
@click.option(
    "--max-batch",
    type=click.IntRange(1),
    default=32,
    show_default=True,
    help="Requests (one per sequence) batched into one model call.",
)
@click.option(
    "--strategy",
    type=click.Choice(["oldest", "direct"]),
    default="oldest",
    show_default=True,
    help="Sequence batcher strategy: oldest batches the ready sequences; direct gives each "
    "sequence a batch slot (adds the READY control).",
)
@click.option(
    "--max-idle-us",
    type=click.IntRange(1),
    default=60_000_000,
    show_default=True,
    help="Triton drops a sequence idle this long (microseconds) and its state.",
)
@click.option(
    "--max-sequences",
    type=click.IntRange(1),
    default=256,
    show_default=True,
    help="Sequences in flight per model instance (oldest); others wait in a backlog.",
)
@click.option(
    "--max-queue-delay-us",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="How long Triton may hold a request to batch it with other sequences' requests.",
)
@click.option(
    "--constant",
    "constants",
    multiple=True,
    metavar="NAME=VALUE",
    help="Value of a constant model input (e.g. sr=16000), baked into the graph.",
)
@click.option(
    "--check",
    "check",
    type=click.Path(exists=True, file_okay=False),
    help="Instead of writing: validate the repository at this path and exit.",
)
def command(
    model: str | None,
    repository: str | None,
    name: str | None,
    backend: str,
    max_batch: int,
    strategy: str,
    max_idle_us: int,
    max_sequences: int,
    max_queue_delay_us: int,
    constants: tuple[str, ...],
    check: str | None,
) -> None:
    """Write a Triton model repository serving MODEL, generated from its state contract.

    \b
    REPO/NAME/config.pbtxt   sequence batching, controls, implicit state, dims and dtypes
    REPO/NAME/1/model.onnx   onnxruntime: state batch-first, START resets it, READY for
                             direct; preprocessing baked in. python: the model as exported
    REPO/NAME/1/model.py     python backend: a StreamPool keyed by correlation id
    One-to-many and seq2seq decoders also get REPO/NAME_init, which makes the first state
    clients send (init.* inputs) with START. Every config is parsed with Triton's own schema
    (tritonclient) and checked against the graph; --check runs those checks on any
    repository.

    \b
    Examples:
      edgeseq triton model.onnx -o repo                      # onnxruntime backend, oldest
      edgeseq triton model.onnx -o repo --backend python --name sensors
      edgeseq triton vad.onnx -o repo --strategy direct --max-batch 8 --constant sr=16000
      edgeseq triton --check repo
    See docs/triton.md for running it in NVIDIA's container or with the pytriton binary.
    """
    from edgeseq.table import format_table

    if check:
        from edgeseq.exporters.triton import check_repository

        checks = check_repository(check)
        rows = [(c.name, c.backend, c.summary, "ok") for c in checks]
        click.echo(format_table(["model", "backend", "config", "checks"], rows))
        return
    if not model or not repository:
        raise click.UsageError("give MODEL and -o REPO (or --check REPO)")
    from edgeseq.cli._options import constants_option
    from edgeseq.exporters.triton import TritonOptions, to_triton

    opts = TritonOptions(
        max_batch=max_batch,
        strategy=strategy,  # type: ignore[arg-type]
        max_idle_us=max_idle_us,
        max_sequences=max_sequences,
        queue_delay_us=max_queue_delay_us,
    )
    repo = to_triton(
        model,
        repository,
        name=name,
        backend=backend,  # type: ignore[arg-type]
        options=opts,
        constants=constants_option(constants, need_values=True),
    )
    rows = [
        (str(p.relative_to(repo.root)), f"{p.stat().st_size / 1024:.1f} KiB") for p in repo.files()
    ]
    click.echo(format_table(["file", "size"], rows))
    click.echo(
        f"validated with Triton's schema and the graph: {', '.join(repo.models)} "
        f"({backend} backend, {strategy} strategy, max batch {max_batch})"
    )
