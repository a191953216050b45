"""Robust zero-shot evaluation: the engine, the suite, the report and sanity checks."""

from ..attacks import AttackSetting, attack_settings
from .autoattack import autoattack, autoattack_plan
from .checks import gradient_health, sanity_warnings
from .compare import compare, comparison_table
from .engine import evaluate_dataset, run_attack
from .eval_set import EvalSet, as_eval_set, benchmark_eval_set
from .report import Report
from .suite import evaluate_robustness, weights_digest

__all__ = [
    "AttackSetting",
    "EvalSet",
    "Report",
    "as_eval_set",
    "attack_settings",
    "autoattack",
    "autoattack_plan",
    "benchmark_eval_set",
    "compare",
    "comparison_table",
    "evaluate_dataset",
    "evaluate_robustness",
    "gradient_health",
    "run_attack",
    "sanity_warnings",
    "weights_digest",
]
