"""What lets an evaluation resume safely: finished datasets' results saved as they finish and reused only for the
same settings, weights and data, and a lock on the output folder against a second run writing into it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from filelock import FileLock, Timeout

from ..errors import InputError
from .results import DatasetResult

logger = logging.getLogger(__name__)

LOCK_FILE = ".pmg_aft_eval.lock"


class OutputDirBusyError(InputError):
    """Another evaluation is writing into the same output folder."""


@contextlib.contextmanager
def output_lock(output_dir: str | None, accelerator: Accelerator):
    """Hold `output_dir` for this evaluation: a second one started into the same folder stops at once with
    [`OutputDirBusyError`] instead of both writing a report and one run's results being lost. The lock is an OS file
    lock, released when the process ends, however it ends (a killed run leaves no stale lock)."""
    if not output_dir:
        yield
        return
    lock, problem = None, [None]
    if accelerator.is_main_process:
        try:
            os.makedirs(output_dir, exist_ok=True)
            lock = FileLock(os.path.join(output_dir, LOCK_FILE))
            lock.acquire(timeout=0)
        except Timeout:
            problem[0] = (
                f"another evaluation is writing into {output_dir} (it holds {os.path.join(output_dir, LOCK_FILE)}); "
                "wait for it to finish (a rerun then resumes its results) or pass another output folder."
            )
        except OSError as error:
            problem[0] = f"cannot write into {output_dir}: {error}"
    broadcast_object_list(problem)  # every process stops, not only the main one
    if problem[0] is not None:
        raise OutputDirBusyError(problem[0])
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def weights_digest(model) -> str:
    """A short hash of the model's weights: results of other weights under the same name are never reused."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def result_path(output_dir: str, name: str) -> str:
    return os.path.join(output_dir, "results", f"{name}.json")


def load_result(output_dir: str | None, name: str, fingerprint: str, data_digest: str) -> DatasetResult | None:
    """A finished dataset's result, if it was computed with the same settings and weights on the same data.

    A result file that cannot be read (a disk that filled up mid-write, an edit) is named in a warning and
    recomputed.
    """
    path = result_path(output_dir, name) if output_dir else None
    if path is None or not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        result = DatasetResult.from_dict(saved["result"], name)
        same = saved.get("fingerprint") == fingerprint and result.data_digest == data_digest
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        logger.warning("%s cannot be read (%s: %s); %s is evaluated again.", path, type(error).__name__, error, name)
        return None
    if not same:
        logger.info("%s holds a result of other settings, weights or data; %s is evaluated again.", path, name)
    return result if same else None


def save_result(output_dir: str, name: str, fingerprint: str, result: DatasetResult) -> None:
    os.makedirs(os.path.join(output_dir, "results"), exist_ok=True)
    path = result_path(output_dir, name)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump({"fingerprint": fingerprint, "result": result.to_dict()}, f, indent=1)
    os.replace(path + ".tmp", path)  # a killed run never leaves a half-written result
