"""Robust zero-shot evaluation: the suite, the report and sanity checks."""

from .autoattack import autoattack, autoattack_plan
from .checks import gradient_health, sanity_warnings
from .compare import compare, comparison_table
from .report import Report
from .suite import ATTACKS, AttackSetting, attack_settings, evaluate_robustness

__all__ = [
    "ATTACKS",
    "AttackSetting",
    "Report",
    "attack_settings",
    "autoattack",
    "autoattack_plan",
    "compare",
    "comparison_table",
    "evaluate_robustness",
    "gradient_health",
    "sanity_warnings",
]
