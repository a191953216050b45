"""Telling bad input from bugs: a command answers the first with one line and keeps the second's traceback."""

from __future__ import annotations

import contextlib
import linecache
import os

TRACEBACK_VARIABLE = "PMG_AFT_TRACEBACK"


def is_input_error(error: BaseException) -> bool:
    """Whether `error` reports bad input rather than a bug.

    It does when it was raised on purpose by a `raise` statement (the checks of this package, and those of
    transformers, datasets and accelerate, name the problem in their message), or when it is an `OSError` about a
    file (a path the user gave). A failing operation (a `KeyError` from a lookup, a `TypeError` from a call) is a bug,
    and `PMG_AFT_TRACEBACK=1` makes every error one.
    """
    if os.environ.get(TRACEBACK_VARIABLE) or not isinstance(error, Exception):
        return False
    if isinstance(error, OSError) and getattr(error, "filename", None):
        return True
    trace = error.__traceback__
    if trace is None:
        return False
    while trace.tb_next is not None:
        trace = trace.tb_next
    line = linecache.getline(trace.tb_frame.f_code.co_filename, trace.tb_lineno).strip()
    return line.startswith("raise ") or line == "raise"


def error_message(error: BaseException) -> str:
    """An input error's own message (a `KeyError`'s without the quotes `str()` adds)."""
    return str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)


@contextlib.contextmanager
def exit_on_input_error():
    """Inside the block, an input error ([`is_input_error`]) becomes `SystemExit("pmg-aft: <its message>")`: one line
    naming the cause, no traceback. Any other error (a bug) propagates with its traceback."""
    try:
        yield
    except Exception as error:
        if not is_input_error(error):
            raise
        raise SystemExit(f"pmg-aft: {error_message(error)}") from error
