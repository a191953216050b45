"""The model card of a checkpoint folder, as `pmg-aft push` publishes it and `pmg-aft eval` of a local checkpoint
writes it beside its report: the method and recipe the folder records, read through the method registry."""

from __future__ import annotations

import json
import os

from .cards import checkpoint_card, read_run_info
from .evaluation import Report
from .methods import MethodInfo
from .trainers import TRAINERS
from .trainers.saving import recipe_of


def checkpoint_method(model_dir: str) -> tuple[MethodInfo | None, dict | None]:
    """The method and recipe a checkpoint folder records: its `pmg_aft.json`, or for a checkpoint saved by pmg_aft
    0.1 the `method` field of its `training_args.json`; `(None, None)` for any other folder (a converted or
    third-party checkpoint, whose card then claims no training method)."""
    info = read_run_info(model_dir)
    if info.get("method"):
        return MethodInfo.from_dict(info["method"]), info.get("recipe")
    path = os.path.join(model_dir, "training_args.json")
    training = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            training = json.load(f)
    if training.get("method") not in TRAINERS:
        return None, None
    trainer = TRAINERS[training["method"]]
    return trainer.method_info, recipe_of(trainer.config_class, training)


def write_checkpoint_card(model_dir: str, report: Report, report_dir: str) -> str:
    """Write into `report_dir` the card `pmg-aft push model_dir --report_dir report_dir` would upload; return its
    path."""
    method, recipe = checkpoint_method(model_dir)
    repo_id = os.path.basename(os.path.abspath(model_dir))
    path = os.path.join(report_dir, "README.md")
    checkpoint_card(model_dir, repo_id, report, report_dir, method=method, recipe=recipe)[0].save(path)
    return path
