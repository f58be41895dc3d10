"""The one exception type users see.

A `SamaError` carries a single line: what went wrong, where (file, key, line) and, when it helps, what
to do. The CLI prints it without a traceback (`--debug` shows one) and exits with its `exit_code`.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from pathlib import Path

# Exit codes that mean something to scripts.
EXIT_OK = 0
EXIT_FAILED = 1  # the job ran but some items failed (batch modes)
EXIT_USAGE = 2  # bad arguments or bad input files
EXIT_IO = 74  # the system refused a write: no space, read-only file system, no permission (sysexits EX_IOERR)
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


class StorageError(SamaError):
    """The system refused to store an output (no space left, read-only file system, no permission)."""

    exit_code = EXIT_IO


# errno values that mean "the disk refused this write", whatever library met them
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO, errno.EACCES, errno.EPERM}
_WRITE_MESSAGES = ("no space left on device", "disk quota exceeded", "read-only file system", "file too large")


def storage_error(e: BaseException, path: str | Path) -> StorageError | None:
    """The StorageError that `e` stands for when it was raised while writing `path`, or None when `e` is
    something else. Libraries report a full disk in their own ways: OSError (Python, DCP), SafetensorError
    (safetensors), RuntimeError "[enforce fail at inline_container.cc:672] . unexpected pos ..." (torch.save)."""
    if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
        return StorageError(f"cannot write: {e.strerror or e}", path=path)
    text = str(e)
    at = next((text.lower().index(m) for m in _WRITE_MESSAGES if m in text.lower()), None)
    reason = None if at is None else text[at:].split("(")[0].split('"')[0].strip()  # the library's own words
    if reason is None and "enforce fail at inline_container" in text.lower():  # torch.save's zip writer, cut short
        reason = "file write failed (is the disk full?)"
    return StorageError(f"cannot write: {reason}", path=path) if reason else None


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Errors raised inside by a refused write become one StorageError naming `path`."""
    try:
        yield
    except SamaError:
        raise
    except Exception as e:
        mapped = storage_error(e, path)
        if mapped is None:
            raise
        raise mapped from e


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
