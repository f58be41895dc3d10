"""Logging and progress to standard error, so that standard output stays free for manifests and JSON."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console

from sama_cli.core.distributed import rank

T = TypeVar("T")

# soft_wrap: log lines are never broken at the terminal width, so that logs stay greppable
err = Console(stderr=True, highlight=False, soft_wrap=True)


def info(message: str) -> None:
    """A log line on stderr, from rank 0 only."""
    if rank() == 0:
        err.print(message)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {message}")


def progress(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """A rich progress bar on stderr over `items`; silent off rank 0 and when stderr is not a terminal
    and SAMA_PROGRESS is unset (keeps CI logs short)."""
    show = rank() == 0 and (sys.stderr.isatty() or os.environ.get("SAMA_PROGRESS") == "1")
    if not show:
        yield from items
        return
    from rich.progress import (  # here, not at the top: `sama --help` has no bar to draw
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)
