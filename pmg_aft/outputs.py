"""Where results go, for every command: an output folder is checked before any compute (a writable folder, not an
input of the command), held by one run at a time (an OS lock), and every result file in it is written whole or not
at all (a temporary file renamed over the target).

Which earlier contents a command may resume or replace is its own rule (a training resumes its own run, an
evaluation its own model's results); each refuses another run's or another model's results unless the user says
`--overwrite_output_dir`, through [`refuse_foreign`].
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator

from .errors import InputError

LOCK_FILE = ".pmg_aft.lock"
OVERWRITE = "--overwrite_output_dir"


class OutputFolderError(InputError):
    """An output folder that cannot take this command's results (not a folder, not writable, an input, another run's
    results, or busy)."""


class OutputDirBusyError(OutputFolderError):
    """Another run is writing into the same output folder."""


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A temporary path beside `path` to write to; renamed over `path` when the block ends without an error (a
    reader never sees a half-written file), removed otherwise."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".partial")
    os.close(handle)
    # mkstemp makes the file private (0600); the result gets the mode any file written here would (umask applied).
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(temporary, 0o666 & ~mask)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_text(path: str, text: str) -> None:
    """Write `text` to `path` whole or not at all."""
    with atomic_path(path) as temporary, open(temporary, "w", encoding="utf-8") as f:
        f.write(text)


def write_json(path: str, values, indent: int = 1) -> None:
    """Write `values` as JSON to `path` whole or not at all."""
    write_text(path, json.dumps(values, indent=indent, default=str) + "\n")


def _real(path: str) -> str:
    return os.path.realpath(os.path.expanduser(path))


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_output_dir(output_dir: str, inputs: Iterable[str | None] = (), flag: str = "--output_dir",
                     contains_inputs_ok: bool = True) -> str:  # fmt: skip
    """Check, before any compute, that `output_dir` can take results: a path that is not a file, under no file,
    writable (nothing is created), and neither one of the command's input folders nor inside one (nor, unless
    `contains_inputs_ok`, holding one: a training rotates the checkpoints of its folder). Returns it.

    Raises:
        [`OutputFolderError`]: one line naming the folder, what is wrong and what to do.
    """
    if not output_dir or not str(output_dir).strip():
        raise OutputFolderError(f"{flag} is empty: name the folder for the results.")
    real = _real(output_dir)
    for given in [i for i in inputs if i]:
        source = _real(given)
        if not os.path.exists(source):
            continue
        if _inside(real, source):
            relation = "is" if real == source else "is inside"
            raise OutputFolderError(
                f"{flag} {output_dir} {relation} the input {given}: writing there would change or mix with what the "
                "command reads. Choose another folder."
            )
        if not contains_inputs_ok and _inside(source, real):
            raise OutputFolderError(
                f"{flag} {output_dir} holds the input {given}, which this command may rotate or overwrite. Choose "
                "another folder."
            )
    if os.path.exists(real) and not os.path.isdir(real):
        raise OutputFolderError(f"{flag} {output_dir} is a file, not a folder: choose a folder name.")
    parent = real
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise OutputFolderError(f"{flag} {output_dir}: {parent} is a file, so no folder can be made under it.")
    try:  # where the folder is, or would be made: nothing is created for a command refused later
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".pmg_aft-write-check"):
            pass
    except OSError as error:
        raise OutputFolderError(
            f"{flag} {output_dir} is not writable ({error.strerror} in {parent}): choose a folder you can write to."
        ) from error
    return output_dir


def refuse_foreign(output_dir: str, found: list[str], why: str, overwrite: bool) -> None:
    """Refuse to write into `output_dir`, which holds `found` (another run's or model's results, or files pmg_aft did
    not write; `why` says which), unless `overwrite`. Nothing is deleted here: a command that may overwrite removes
    only what it would write itself."""
    if found and not overwrite:
        shown = ", ".join(sorted(found)[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
        raise OutputFolderError(
            f"{output_dir} holds {why} ({shown}): pass another --output_dir, or {OVERWRITE} to replace them."
        )


@contextlib.contextmanager
def output_lock(output_dir: str | None, accelerator=None, what: str = "run"):
    """Hold `output_dir` for this run: a second run started into the same folder (a training or an evaluation)
    stops at once with [`OutputDirBusyError`] instead of both writing and one run's results being lost. The lock is
    an OS file lock, released when the process ends however it ends (a killed run leaves no stale lock). Under
    several processes the main one holds it and every process stops if it cannot."""
    from filelock import FileLock, Timeout

    if not output_dir:
        yield
        return
    main = accelerator is None or accelerator.is_main_process
    lock, problem = None, [None]
    created = main and not os.path.isdir(output_dir)
    if main:
        try:
            os.makedirs(output_dir, exist_ok=True)
            lock = FileLock(os.path.join(output_dir, LOCK_FILE))
            lock.acquire(timeout=0)
        except Timeout:
            problem[0] = (
                f"another pmg-aft run is writing into {output_dir} (it holds {os.path.join(output_dir, LOCK_FILE)}); "
                f"wait for it to finish (this {what} may then resume) or pass another --output_dir."
            )
        except OSError as error:
            problem[0] = f"cannot write into {output_dir}: {error.strerror or error}"
    if accelerator is not None:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(problem)  # every process stops, not only the main one
    if problem[0] is not None:
        raise OutputDirBusyError(problem[0])
    try:
        yield
    finally:
        if lock is not None:
            lock.release()
        if created and lock is not None and set(os.listdir(output_dir)) <= {LOCK_FILE}:
            # A run refused before it wrote anything leaves no empty folder behind (one it did not make stays).
            with contextlib.suppress(OSError):
                os.remove(os.path.join(output_dir, LOCK_FILE))
                os.rmdir(output_dir)


@contextlib.contextmanager
def staged_folder(output_dir: str) -> Iterator[str]:
    """A new folder beside `output_dir` to write a model into. When the block ends without an error its entries are
    moved into `output_dir`, each whole, with `pmg_aft.json` last (a folder with a provenance record is a finished
    one); otherwise it is removed and `output_dir` is as it was."""
    import shutil

    parent = os.path.dirname(os.path.abspath(output_dir))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(
        dir=parent, prefix=f".{os.path.basename(os.path.abspath(output_dir))}.", suffix=".partial"
    )
    try:
        yield staging
        os.makedirs(output_dir, exist_ok=True)
        names = sorted(os.listdir(staging), key=lambda n: n == "pmg_aft.json")
        for name in names:
            target = os.path.join(output_dir, name)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            os.replace(os.path.join(staging, name), target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
