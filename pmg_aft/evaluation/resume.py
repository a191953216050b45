"""What lets an evaluation resume safely: finished datasets' results saved as they finish and reused only for the
same settings, weights and data, in a folder that holds no other model's evaluation."""

from __future__ import annotations

import hashlib
import json
import logging
import os

from ..outputs import refuse_foreign, write_json
from ..provenance import PROVENANCE_FILE
from .report import REPORT_FILE, REPORT_FILES
from .results import DatasetResult

logger = logging.getLogger(__name__)


def claim_results(output_dir: str | None, model_digest: str | None, overwrite: bool = False) -> None:
    """Refuse an evaluation folder that holds another model's evaluation (a report or results of other weights), or
    files an evaluation writes that pmg_aft did not write there (a `README.md`, plots), unless `overwrite`; then the
    other weights' results are removed, so that nothing of theirs is reused or shown."""
    if not output_dir or not os.path.isdir(output_dir):
        return
    found, stale = [], []
    if os.path.isfile(os.path.join(output_dir, PROVENANCE_FILE)):  # a model's own folder: its card would be replaced
        found.append(f"{PROVENANCE_FILE} (a model folder)")
    report = os.path.join(output_dir, REPORT_FILE)
    if os.path.isfile(report):  # written whole by pmg_aft (temp + rename): one that cannot be read is not ours
        digest = _recorded_digest(report)
        if digest != model_digest:
            found.append(
                f"{REPORT_FILE} of weights {digest}" if digest != UNREADABLE else f"an unreadable {REPORT_FILE}"
            )
    results = os.path.join(output_dir, "results")
    for name in sorted(os.listdir(results)) if os.path.isdir(results) else ():
        path = os.path.join(results, name)
        recorded = _recorded_digest(path)
        if name.endswith(".json") and recorded != UNREADABLE and recorded != model_digest:
            found.append(f"results/{name}")
            stale.append(path)
    if found:
        refuse_foreign(output_dir, found, "another model's evaluation or files pmg_aft cannot read", overwrite)
    elif not os.path.isfile(report):
        foreign = [n for n in (*REPORT_FILES, "README.md") if os.path.exists(os.path.join(output_dir, n))]
        refuse_foreign(output_dir, foreign, "files pmg_aft did not write", overwrite)
    for path in stale:
        os.remove(path)


UNREADABLE = "unreadable"  # a result file cut short by hand: recomputed, as a file of this folder's results


def _recorded_digest(path: str) -> str | None:
    """The weights digest a report or result file records (`None` if it records none, [`UNREADABLE`] if it cannot be
    read)."""
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
    except (OSError, ValueError):
        return UNREADABLE
    return values.get("model_digest") if isinstance(values, dict) else None


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
        if saved.pop("digest", None) != _content_digest(saved):
            raise ValueError("it was changed after pmg_aft wrote it")
        result = DatasetResult.from_dict(saved["result"], name)
        same = saved.get("fingerprint") == fingerprint and result.data_digest == data_digest
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        logger.warning("%s cannot be read (%s: %s); %s is evaluated again.", path, type(error).__name__, error, name)
        return None
    if not same:
        logger.info("%s holds a result of other settings, weights or data; %s is evaluated again.", path, name)
    return result if same else None


def save_result(output_dir: str, name: str, fingerprint: str, model_digest: str | None, result: DatasetResult) -> None:
    """Save a finished dataset's result (whole or not at all: a killed run never leaves a half-written one), with a
    digest of its content: a result changed afterwards is never reused."""
    values = {"fingerprint": fingerprint, "model_digest": model_digest, "result": result.to_dict()}
    write_json(result_path(output_dir, name), values | {"digest": _content_digest(values)})


def _content_digest(values: dict) -> str:
    text = json.dumps(json.loads(json.dumps(values, default=str)), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
