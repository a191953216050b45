"""Bad input and bugs: [`InputError`] is bad input, which a command answers with one line; anything else is a bug and
keeps its traceback. A leaf module: it imports nothing from `pmg_aft`."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil

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


class ConditionError(InputError):
    """A condition of the machine, not a bug: a full disk, a permission, a read-only or missing folder. One line
    naming the condition and the file; exit status 1 (the input was fine)."""

    exit_status = 1


# The OS conditions a user can act on, with what to do.
CONDITIONS = {
    errno.ENOSPC: ("no space left on the device", "free some space, or write to another disk"),
    errno.EDQUOT: ("the disk quota is exceeded", "free some space, or write to another disk"),
    errno.EACCES: ("permission denied", "write to a folder you own, or fix its permissions"),
    errno.EPERM: ("operation not permitted", "write to a folder you own, or fix its permissions"),
    errno.EROFS: ("the file system is read-only", "write to a writable folder"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "fix the path"),
    errno.EISDIR: ("a folder is where a file should be", "fix the path"),
    errno.ENAMETOOLONG: ("the file name is too long", "use a shorter path"),
}
LOW_SPACE = 64 * 2**20  # bytes: below this, a failed write is taken for a full disk


def _chain(error: BaseException):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def machine_condition(error: BaseException, where: str | None = None) -> ConditionError | None:
    """The [`ConditionError`] an exception stands for (an `OSError` of a full disk, a permission, ...; torch's or
    safetensors' failed writes on a full disk at `where`), or `None` for anything else (a bug keeps its
    traceback)."""
    for cause in _chain(error):
        if isinstance(cause, OSError) and cause.errno in CONDITIONS:
            what, fix = CONDITIONS[cause.errno]
            path = cause.filename or where or "a file"
            return ConditionError(f"{what}: {path}: {fix}, then run the same command again.")
        text = str(cause)
        writes = ("unexpected pos", "file write failed", "No space left", "StorageFull", "os error 28")
        if where and any(w in text for w in writes):
            folder = where if os.path.isdir(where) else os.path.dirname(os.path.abspath(where)) or "."
            free = shutil.disk_usage(folder).free if os.path.exists(folder) else None
            if free is not None and (free < LOW_SPACE or "No space" in text or "StorageFull" in text):
                return ConditionError(
                    f"no space left on the device: writing into {where} failed with {free // 2**20} MB free: free "
                    "some space, or write to another disk, then run the same command again."
                )
    return None


@contextlib.contextmanager
def machine_conditions(where: str | None = None):
    """Inside the block, an exception that stands for a condition of the machine ([`machine_condition`]) is
    re-raised as a one-line [`ConditionError`]; anything else propagates unchanged."""
    try:
        yield
    except InputError:
        raise
    except Exception as error:
        condition = machine_condition(error, where)
        if condition is None:
            raise
        raise condition from error


def tokens() -> list[str]:
    """The Hub tokens this process may send (the environment's and the stored login), longest first."""
    found = {os.environ.get(name, "") for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    try:
        from huggingface_hub import get_token

        found.add(get_token() or "")
    except Exception:  # no stored login, or huggingface_hub cannot read it: nothing more to hide
        pass
    return sorted((t for t in found if len(t) >= 8), key=len, reverse=True)


def scrub(text: str) -> str:
    """`text` with every Hub token this process may send replaced by `***` (some HTTP errors echo request
    headers)."""
    for token in tokens():
        text = text.replace(token, "***")
    return text


class ScrubbedStream:
    """A text stream that writes through `stream` with every Hub token replaced ([`scrub`]): installed over stdout
    and stderr by the commands, so no message, log line or traceback prints a token."""

    def __init__(self, stream) -> None:
        self.stream, self.hidden = stream, tokens()

    def write(self, text: str) -> int:
        for token in self.hidden:
            text = text.replace(token, "***")
        return self.stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


@contextlib.contextmanager
def scrubbed_output():
    """Inside the block, `sys.stdout` and `sys.stderr` never show a Hub token (tracebacks printed on the way out
    included: the block is left after they are printed only by callers that print them inside it)."""
    import sys

    if not tokens() or isinstance(sys.stderr, ScrubbedStream):
        yield
        return
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = ScrubbedStream(sys.stdout), ScrubbedStream(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def show_traceback() -> bool:
    """Whether `PMG_AFT_TRACEBACK=1` asks for tracebacks of input errors too."""
    return bool(os.environ.get(TRACEBACK_VARIABLE))


class InputExit(SystemExit):
    """`SystemExit("pmg-aft: <message>")` that keeps the input error's exit status (`status`): the `pmg-aft` command
    prints its message (scrubbed of tokens) and exits with it; run directly, Python prints it and exits 1."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@contextlib.contextmanager
def exit_on_input_error():
    """Inside the block, an [`InputError`] becomes [`InputExit`] (`SystemExit("pmg-aft: <its message>")`): one line
    naming the cause, no traceback (unless `PMG_AFT_TRACEBACK=1`). Every other exception propagates with its
    traceback."""
    try:
        yield
    except InputError as error:
        if show_traceback():
            raise
        raise InputExit(f"pmg-aft: {error}", error.exit_status) from error


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
