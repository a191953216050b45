"""Bad input and bugs: [`InputError`] is bad input, which a command answers with one line; anything else is a bug and
keeps its traceback. A leaf module: it imports nothing from `pmg_aft`."""

from __future__ import annotations

import contextlib
import os

TRACEBACK_VARIABLE = "PMG_AFT_TRACEBACK"


class InputError(ValueError):
    """Bad input: a value, option, file, dataset or checkpoint the user gave that cannot serve (or a condition only
    the user can fix, such as a failed upload). The message names the problem and the fix; the `pmg-aft` commands
    print it as one line and exit with `exit_status`.

    Raise it (or a subclass) for every check of user input. Any other exception, a `ValueError` included, is treated
    as a bug: it keeps its traceback.
    """

    exit_status = 2


class UnknownNameError(InputError, KeyError):
    """A name that is not registered (a benchmark, an eval set, a column); the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError's would quote the whole message
        return str(self.args[0]) if self.args else ""


class MissingInputError(InputError, FileNotFoundError):
    """A file or folder the input names is not there (or not complete)."""


class UploadError(InputError, RuntimeError):
    """An upload to the Hub failed (network, token, permissions); nothing local was changed, so the same command can
    be run again. Exit status 1: the input was fine."""

    exit_status = 1


class DownloadError(InputError, RuntimeError):
    """A download from the Hub cannot be made (network, gating, a token); exit status 1, as for uploads."""

    exit_status = 1


def show_traceback() -> bool:
    """Whether `PMG_AFT_TRACEBACK=1` asks for tracebacks of input errors too."""
    return bool(os.environ.get(TRACEBACK_VARIABLE))


@contextlib.contextmanager
def exit_on_input_error():
    """Inside the block, an [`InputError`] becomes `SystemExit("pmg-aft: <its message>")`: one line naming the cause,
    no traceback (unless `PMG_AFT_TRACEBACK=1`). Every other exception propagates with its traceback."""
    try:
        yield
    except InputError as error:
        if show_traceback():
            raise
        raise SystemExit(f"pmg-aft: {error}") from error


@contextlib.contextmanager
def as_input_error(where: str = ""):
    """Inside the block, a `ValueError` is input: re-raised as an [`InputError`] (prefixed with `where`).

    For the few places whose every `ValueError` is about the input, such as building argument dataclasses, whose
    `__post_init__` (transformers' `TrainingArguments` included) rejects values that cannot work together.
    """
    try:
        yield
    except InputError:
        raise
    except ValueError as error:
        raise InputError(f"{where}{error}") from error
