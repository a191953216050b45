"""The model card `pmg-aft eval` writes beside its report for a local checkpoint: the card `pmg-aft push` would
publish, from the folder's provenance."""

from __future__ import annotations

import os

from .cards import checkpoint_card
from .evaluation import Report
from .outputs import write_text


def write_checkpoint_card(model_dir: str, report: Report, report_dir: str) -> str:
    """Write into `report_dir` the card `pmg-aft push model_dir --report_dir report_dir` would upload (whole or not
    at all); return its path."""
    repo_id = os.path.basename(os.path.abspath(model_dir))
    path = os.path.join(report_dir, "README.md")
    write_text(path, str(checkpoint_card(model_dir, repo_id, report)[0]))
    return path
