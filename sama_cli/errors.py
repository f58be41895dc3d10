"""The one exception type users see.

A `SamaError` carries a single line: what went wrong, where (file, key, line) and, when it helps, what
to do. The CLI prints it without a traceback (`--debug` shows one) and exits with its `exit_code`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

# Exit codes that mean something to scripts.
EXIT_OK = 0
EXIT_FAILED = 1  # the job ran but some items failed (batch modes)
EXIT_USAGE = 2  # bad arguments or bad input files
EXIT_INTERRUPTED = 130


class SamaError(Exception):
    """A user-facing error: one line, no traceback needed."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, path: str | Path | None = None):
        self.path = str(path) if path is not None else None
        self.message = f"{self.path}: {message}" if self.path else message
        super().__init__(self.message)


class InputError(SamaError):
    """A file the user gave is missing, unreadable or malformed."""


class ConfigError(SamaError):
    """A config, recipe or option is invalid (unknown key, wrong type, bad value)."""


class WeightsError(SamaError):
    """Model weights do not match the model (missing keys, shape mismatches, unknown layout)."""


@contextlib.contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """Errors raised inside (by pure tensor code or a codec: a clip too small for its tube splits, sides
    not divisible, ...) name `path`, unless they already name a file."""
    try:
        yield
    except SamaError as e:
        if e.path is not None:
            raise
        raise type(e)(e.message, path=path) from None
