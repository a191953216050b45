"""A trainer's `evaluate()`: which eval sets it runs, the report of its results and the metrics it logs."""

from __future__ import annotations

import os

from ..attack_settings import AttackGrid
from ..constants import CUSTOM_PROTOCOL, TRAINER_PROTOCOL
from ..errors import InputError, UnknownNameError
from ..evaluation import EvalSet, Report, as_eval_set, sanity_warnings
from ..evaluation.protocols import RUN_NORMALIZATION, Protocol
from ..evaluation.results import DatasetResult
from .base_config import RobustCLIPConfig

# A trainer's evaluation is not a published protocol: its report says so, and what to run instead.
# What a fine-tuning run's own evaluation is, beside its arguments.
TRAINER_TEXT = {
    "description": "The `trainer` protocol is the fine-tuning run's own evaluation (its head, each eval set's "
    "prompts).",
    "comparable_with": "Its figures compare with no paper's: use `pmg-aft eval` for figures comparable with the "
    "papers'.",
    "evidence": "The run's arguments (its config in pmg_aft.json beside the weights).",
}


def trainer_protocol(args: RobustCLIPConfig, scale: float, precision: str, grid: AttackGrid, cap) -> Protocol:
    """The `trainer` protocol of a run's own evaluation: its head's logit scale and normalisation, its
    preprocessing, the eval attack and precision."""
    return Protocol(name=TRAINER_PROTOCOL, **TRAINER_TEXT, texts=CUSTOM_PROTOCOL, logit_scale=scale,
                    normalization=RUN_NORMALIZATION, native_resolution=args.native_resolution, crop_pct=args.crop_pct,
                    interpolation=args.interpolation, attack=grid, max_eval_samples=cap, sample_seed=None,
                    whole_sets=False, mixed_precision=precision)  # fmt: skip


def eval_sets(data, trainer_sets, defaults: dict) -> tuple[dict[str, EvalSet], bool]:
    """The eval sets `evaluate(data)` runs, by name, and whether `data` was a single set (its metrics are then
    `eval_clean_accuracy`, ..., without a dataset name). `data` is a dataset, an [`EvalSet`], a dict of them, or the
    name of one of the trainer's own (`trainer_sets`); `defaults` say how a plain dataset is read and prompted."""
    if data is None:
        raise InputError("evaluate() needs an eval_dataset (a dataset, an EvalSet or a dict of them).")
    if isinstance(data, str):
        if not isinstance(trainer_sets, dict) or data not in trainer_sets:
            known = list(trainer_sets) if isinstance(trainer_sets, dict) else []
            raise UnknownNameError(
                f"No eval dataset named {data!r}; the trainer has {known}. Pass datasets, not names."
            )
        data = {data: trainer_sets[data]}
    if isinstance(data, (list, tuple)):
        raise TypeError(
            "evaluate() takes datasets, EvalSets or a dict of them, not names: build a benchmark's eval set with "
            "pmg_aft.benchmark_eval_set(name)."
        )
    if not isinstance(data, dict):
        name = data.name if isinstance(data, EvalSet) else "eval"
        return {name: as_eval_set(name, data, **defaults)}, True
    return {name: as_eval_set(name, value, **defaults) for name, value in data.items()}, False


def trainer_report(
    results: dict[str, DatasetResult], args: RobustCLIPConfig, model, precision: str, grid: AttackGrid, settings: list
) -> Report:
    """The [`Report`] of a trainer's evaluation: the `trainer` protocol, the training head's logit scale and
    normalisation, the eval attack; with its sanity warnings."""
    scale = args.logit_scale.value
    scale = float(model.logit_scale.exp()) if scale is None else scale
    caps = {r.max_eval_samples for r in results.values()}
    cap = next(iter(caps)) if len(caps) == 1 else None  # one cap for every eval set, or none to name
    report = Report(
        model=args.hub_model_id or os.path.basename(os.path.abspath(args.output_dir)),
        protocol=TRAINER_PROTOCOL,  # each result names the protocol of its prompts
        logit_scale=scale,
        image_mean=list(args.image_mean),
        image_std=list(args.image_std),
        settings=settings,
        max_eval_samples=cap,
        mixed_precision=precision,
        seed=args.seed,
        results=results,
        protocol_record=trainer_protocol(args, scale, precision, grid, cap),
    )
    report.warnings = sanity_warnings(report)
    return report


def eval_metrics(report: Report, single: bool, prefix: str, seconds: float) -> dict[str, float]:
    """`{prefix}_clean_accuracy`, `..._robust_accuracy` and `..._samples` (per dataset, `{prefix}_{name}_...`, and
    the means over datasets, so `metric_for_best_model="robust_accuracy"` works), runtime and throughput."""
    key = report.attack_keys[0]
    metrics: dict[str, float] = {}
    for name, result in report.results.items():
        head = prefix if single else f"{prefix}_{name}"
        metrics[f"{head}_clean_accuracy"] = result.clean_accuracy
        metrics[f"{head}_robust_accuracy"] = result.robust_accuracy[key]
        metrics[f"{head}_samples"] = result.samples
    if not single:
        summary = report.summary()
        metrics[f"{prefix}_clean_accuracy"] = summary["clean"]
        metrics[f"{prefix}_robust_accuracy"] = summary[key]
    total = sum(r.samples for r in report.results.values())
    metrics[f"{prefix}_runtime"] = round(seconds, 4)
    metrics[f"{prefix}_samples_per_second"] = round(total / max(seconds, 1e-9), 3)
    return metrics
