"""Metrics as `evaluate` modules shipped with the package, so they load offline."""

from __future__ import annotations

from importlib import resources

import evaluate


def robust_accuracy_metric() -> evaluate.EvaluationModule:
    """The `robust_accuracy` metric (clean, per-attack and worst-case accuracy), loaded from the installed package
    (no network), in memory so that several processes can compute it at once."""
    path = resources.files("pmg_aft.metrics").joinpath("robust_accuracy", "robust_accuracy.py")
    return evaluate.load(str(path), keep_in_memory=True)
