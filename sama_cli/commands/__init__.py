"""The subcommands, one module each; each module's `register(app)` adds its command to the Typer app.
Shared here: how a batch command ends."""

from __future__ import annotations

import json
import sys

import typer

from sama_cli.core.console import err
from sama_cli.core.errors import EXIT_FAILED


def report_batch(headline: str, s: dict, rows: list[dict], *, stdout: bool, as_json: bool) -> None:
    """How a batch command (encode, anchor) ends: the headline (-> its manifest) and each failure on
    stderr; the output rows (--stdout) or the summary `s` (--json) on stdout; exit 1 if any item failed."""
    from sama_cli.io.manifest import dumps_rows

    err.print(headline + (f" -> {s['manifest']}" if s["manifest"] else ""))
    for f in s["failed"]:
        err.print(f"[red]failed[/red] {f['id']}: {f['error']}")
    if stdout:
        sys.stdout.write(dumps_rows(rows, None))
    if as_json:
        sys.stdout.write(json.dumps(s) + "\n")
    if s["failed"]:
        raise typer.Exit(EXIT_FAILED)
