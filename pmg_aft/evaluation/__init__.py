"""Robust zero-shot evaluation: the engine, the suite, the report and sanity checks."""

from ..attack_settings import AttackGrid, AttackSetting
from ..autoattack import AutoAttackPlan, autoattack, autoattack_plan
from ..outputs import OutputDirBusyError
from ..provenance import weights_digest
from .checks import gradient_health, sanity_warnings
from .compare import compare, comparison_table
from .engine import EvalLoader, evaluate_dataset, run_attack
from .eval_set import EvalSet, as_eval_set, benchmark_eval_set
from .protocols import PROTOCOL_RECORDS, Protocol, get_protocol, protocol_prompts
from .report import Report
from .results import WORST_CASE, DatasetResult
from .suite import evaluate_robustness

__all__ = [
    "PROTOCOL_RECORDS",
    "WORST_CASE",
    "AttackGrid",
    "AttackSetting",
    "DatasetResult",
    "EvalLoader",
    "OutputDirBusyError",
    "Protocol",
    "AutoAttackPlan",
    "EvalSet",
    "Report",
    "as_eval_set",
    "autoattack",
    "autoattack_plan",
    "benchmark_eval_set",
    "compare",
    "comparison_table",
    "evaluate_dataset",
    "evaluate_robustness",
    "get_protocol",
    "gradient_health",
    "protocol_prompts",
    "run_attack",
    "sanity_warnings",
    "weights_digest",
]
