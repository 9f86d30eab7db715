"""edgeseq train: a task and a data source in, a checkpoint out."""

from __future__ import annotations

import click

__all__ = ["command"]


@click.command("train")
@click.option(
    "--task",
    type=click.Choice(["forecast", "classify", "generate"]),
    required=True,
    help="forecast: predict the next row of a series; classify: a label per "
    "sequence (running prediction when streamed); generate: next character.",
)
@click.option(
    "--data",
    required=True,
    help="A CSV file (forecast/classify), a text file (generate), or a built-in "
    "set: ibm (forecast), basic-motions (classify), pydoc (generate). Formats: see above.",
)
@click.option(
    "--columns",
    default="",
    help="Comma-separated CSV columns to use as features, in this order (default: every "
    "numeric column; classify: every column but sequence and label). Recorded in the model.",
)
@click.option(
    "--cell",
    type=click.Choice(["lstm", "gru", "rnn"]),
    default="lstm",
    show_default=True,
    help="Recurrent cell.",
)
@click.option("--hidden", "hidden_size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--layers", type=click.IntRange(1, 8), default=1, show_default=True)
@click.option(
    "--dropout",
    type=click.FloatRange(0, 0.9),
    default=0.0,
    show_default=True,
    help="Dropout between stacked layers.",
)
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=3e-3,
    show_default=True,
    help="Adam learning rate.",
)
@click.option(
    "--clip",
    "clip_norm",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Max gradient norm (0 disables clipping; clipping tames exploding gradients).",
)
@click.option(
    "--tbptt",
    type=click.IntRange(1),
    default=64,
    show_default=True,
    help="forecast: truncated-BPTT window in frames.",
)
@click.option(
    "--seq-len",
    type=click.IntRange(2),
    default=64,
    show_default=True,
    help="generate: training window in characters.",
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 0.5),
    default=0.1,
    show_default=True,
    help="Share held out for validation and early stopping (forecast: the last part of the "
    "series); 0 trains on everything, without early stopping.",
)
@click.option("--max-steps", type=click.IntRange(1), default=None, help="Stop after N steps.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(dir_okay=False),
    help="Checkpoint file to write (.pt).",
)
def command(
    task: str,
    data: str,
    columns: str,
    cell: str,
    hidden_size: int,
    layers: int,
    dropout: float,
    epochs: int,
    batch_size: int,
    lr: float,
    clip_norm: float,
    tbptt: int,
    seq_len: int,
    val_fraction: float,
    max_steps: int | None,
    seed: int,
    out: str,
) -> None:
    """Train a recurrent model and write a checkpoint (config + weights, no pickled code).

    It prints the feature columns it uses, in order, and records them in the checkpoint;
    the exported model keeps them, so `edgeseq stream` picks the same columns from a CSV
    with a header.

    \b
    Data formats (--data):
      forecast  CSV: a header line of names, then one row per time step, e.g.
                  time,temp,humidity
                  2024-05-01T10:00,21.5,40.2
                Numeric columns are the features (or --columns); each row is
                predicted from the rows before it. Built in: ibm.
      classify  CSV: a header with a 'sequence' id column, a 'label' column and
                feature columns; one row per time step, every sequence with the
                same number of rows, e.g.
                  sequence,label,ax,ay
                  1,walking,0.12,0.98
                Built in: basic-motions (needs edgeseq[examples]).
      generate  a UTF-8 text file; the model learns it character by character.
                Built in: pydoc.

    \b
    Examples:
      edgeseq train --task forecast --data ibm -o ibm.pt
      edgeseq train --task forecast --data sensor.csv --columns temp,humidity -o s.pt
      edgeseq train --task classify --data basic-motions --cell gru -o motions.pt
      edgeseq train --task generate --data book.txt --hidden 128 --layers 2 -o chars.pt
    Then: edgeseq export CHECKPOINT -o model.onnx --verify
    """
    from edgeseq.cli._paths import refuse_overwriting_an_input
    from edgeseq.train.tasks import TaskOptions, train_task

    refuse_overwriting_an_input(out, **{"--data": data})
    opts = TaskOptions(
        task=task, data=data, cell=cell, hidden_size=hidden_size, layers=layers,
        dropout=dropout, epochs=epochs, batch_size=batch_size, lr=lr,
        clip_norm=clip_norm or None, tbptt=tbptt, seq_len=seq_len,
        columns=[c.strip() for c in columns.split(",") if c.strip()], max_steps=max_steps,
        seed=seed, val_fraction=val_fraction, log=click.echo,
    )  # fmt: skip
    summary = train_task(opts, out)
    val = summary["val_loss"]
    click.echo(
        f"wrote {out}: {summary['epochs']} epochs, {summary['steps']} steps, "
        f"train loss {summary['train_loss']:.4f}"
        + (f", best val loss {val:.4f}" if val is not None else "")
        + f" ({summary['seconds']:.1f} s)"
    )
