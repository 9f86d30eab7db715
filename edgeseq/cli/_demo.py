"""edgeseq demo: train, export, verify and stream the embedded forecaster."""

from __future__ import annotations

import click

__all__ = ["command"]


@click.command("demo")
@click.option(
    "--out",
    "out_dir",
    default="edgeseq-demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for model.pt and model.onnx.",
)
@click.option(
    "--cell",
    type=click.Choice(["lstm", "gru", "rnn"]),
    default="lstm",
    show_default=True,
    help="Recurrent cell to train.",
)
@click.option(
    "--epochs",
    type=click.IntRange(1, 200),
    default=8,
    show_default=True,
    help="Training epochs (early stopping may end sooner).",
)
@click.option(
    "--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Random seed."
)
def command(out_dir: str, cell: str, epochs: int, seed: int) -> None:
    """Train a small forecaster on IBM's daily closes (shipped with edgeseq), export it to
    ONNX, check chunked-streaming parity against PyTorch, stream the held-out days one at
    a time, and print parity, latency, size and error against the naive forecast.

    \b
    Example:
      edgeseq demo --out /tmp/demo && edgeseq inspect /tmp/demo/model.onnx
    """
    from edgeseq.train.demo import run_demo

    report = run_demo(out_dir, cell=cell, epochs=epochs, seed=seed)
    click.echo(report.table())
    click.echo(f"\nartifacts: {report.out_dir}/model.pt, {report.out_dir}/model.onnx")
    if report.parity_max_abs > 1e-4 or report.chunked_parity_max_abs > 1e-4:
        raise click.ClickException(
            f"streamed outputs differ from PyTorch by {report.parity_max_abs:.2e}; expected "
            "<= 1e-4. Please report this with `edgeseq inspect` output."
        )
