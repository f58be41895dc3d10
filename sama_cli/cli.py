"""The `sama` command line: a Typer app whose subcommands are thin wrappers over library functions.

Each module in `sama_cli.commands` exposes `register(app)`; a subcommand is listed in
`_COMMAND_MODULES` only once it works. All of them are imported to build the app, for every command and
every `--help`: a command module imports torch, diffusers, transformers and the like inside its command
function, never at the top (tests/test_cli.py checks), so that `sama --help` answers at once.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer
from rich.markup import escape

from sama_cli import __version__
from sama_cli.core.console import err
from sama_cli.core.errors import EXIT_INTERRUPTED, SamaError, storage_error

app = typer.Typer(
    name="sama",
    help="SAMA video editing: encode, perturb, anchor, train, edit and bench, chained by files.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_COMMAND_MODULES: tuple[str, ...] = (
    "synth",
    "encode",
    "perturb",
    "anchor",
    "edit",
    "train",
    "bench",
)

_state = {"debug": os.environ.get("SAMA_DEBUG") == "1"}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sama {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    if debug:
        _state["debug"] = True


for _name in _COMMAND_MODULES:
    importlib.import_module(f"sama_cli.commands.{_name}").register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, turning SamaError into one line and an exit code."""
    try:
        app(args=argv, prog_name="sama")
    except SamaError as e:
        if _state["debug"]:
            raise
        err.print(f"[red]error:[/red] {escape(e.message)}", soft_wrap=True)
        sys.exit(e.exit_code)
    except OSError as e:  # a refused write that no command caught: still one line and the I/O exit code
        mapped = storage_error(e, e.filename or "output")
        if mapped is None or _state["debug"]:
            raise
        err.print(f"[red]error:[/red] {escape(mapped.message)}", soft_wrap=True)
        sys.exit(mapped.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)
