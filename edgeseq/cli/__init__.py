"""The ``edgeseq`` command line: a thin shell over library calls.

Each command lives in its own module and imports torch/onnx inside its body, so
``edgeseq --help`` and the device-side commands start fast and work without torch.
A user error prints one line and exits with status 1, never a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util

import click

from edgeseq.errors import EdgeseqError

__all__ = ["main"]

# command name -> module under edgeseq.cli that defines a click command named `command`
COMMANDS: dict[str, str] = {
    "train": "_train",
    "export": "_export",
    "verify": "_verify",
    "quantize": "_quantize",
    "inspect": "_inspect",
    "stream": "_stream",
    "serve": "_serve",
    "generate": "_generate",
    "demo": "_demo",
    "bench": "_bench",
    "triton": "_triton",
}


class _OneLineUsageError(click.UsageError):
    """A usage error as one line (click prints a usage block first): the message, and
    where the help is."""

    def show(self, file=None) -> None:  # type: ignore[no-untyped-def]
        hint = f" (see: {self.ctx.command_path} --help)" if self.ctx is not None else ""
        click.echo(f"Error: {one_line(self.format_message())}{hint}", file=file, err=file is None)


def _one_line_usage(exc: click.UsageError) -> click.UsageError:
    if isinstance(exc, _OneLineUsageError) or type(exc).__name__ == "NoArgsIsHelpError":
        return exc  # `edgeseq` alone prints the help, as it should
    return _OneLineUsageError(exc.format_message(), exc.ctx)


class _Group(click.Group):
    """Loads commands lazily and turns every user error into a one-line message."""

    def make_context(self, *args, **kwargs) -> click.Context:  # type: ignore[no-untyped-def]
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:
            raise _one_line_usage(exc) from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [n for n in COMMANDS if importlib.util.find_spec(f"edgeseq.cli.{COMMANDS[n]}")]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        try:
            module = importlib.import_module(f"edgeseq.cli.{COMMANDS[name]}")
        except ModuleNotFoundError:
            return None
        return module.command

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # bad options of a command, or an unknown command
            raise _one_line_usage(exc) from None
        except EdgeseqError as exc:
            from edgeseq.cli._words import cli_words

            raise click.ClickException(cli_words(one_line(exc))) from None
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            raise click.ClickException(one_line(exc)) from None
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in {"torch", "onnx", "onnxscript"}:
                raise click.ClickException(
                    f"this command needs {exc.name}, which is not installed. Install the "
                    "training/export extra: pip install 'edgeseq[torch]'."
                ) from None
            raise


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (click prints it after 'Error: ')."""
    return " ".join(str(exc).split()) or type(exc).__name__


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgeseq")
def main() -> None:
    """edgeseq: recurrent models (RNN, LSTM, GRU) from PyTorch to streaming edge inference.

    \b
    A typical session:
      edgeseq train --task forecast --data ibm --cell lstm -o model.pt
      edgeseq export model.pt -o model.onnx --verify
      edgeseq inspect model.onnx
      tail -f sensor.csv | edgeseq stream model.onnx
    Run `edgeseq COMMAND --help` for each command's options and examples.
    """
