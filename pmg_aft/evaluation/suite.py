"""The robust zero-shot evaluation suite: clean and adversarial accuracy of any CLIP checkpoint on the benchmarks."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list

from ..attacks import attack_settings
from ..constants import PROTOCOL_LOGIT_SCALE
from ..data import BENCHMARKS, EVAL_SUITE, check_protocol, get_benchmark, pinned_revision
from ..zeroshot import ZeroShotClassifier
from .checks import sanity_warnings
from .engine import PRECISIONS, evaluate_dataset
from .eval_set import EvalSet, as_eval_set, benchmark_eval_set
from .report import Report

logger = logging.getLogger(__name__)


def evaluate_robustness(
    model,
    processor,
    benchmarks: str | Sequence[str] = "all",
    protocol: str = "paper",
    attacks: Sequence[str] = ("pgd",),
    eps: Sequence[float] = (1 / 255,),
    steps: int | Sequence[int] = 10,
    step_size: float | None = None,
    norm: str = "linf",
    max_eval_samples: int | None = None,
    batch_size: int = 64,
    benchmark_data_dir: str | None = None,
    output_dir: str | None = None,
    logit_scale: float | None = None,
    mixed_precision: str | None = None,
    model_id: str | None = None,
    datasets: dict | None = None,
    seed: int = 0,
    accelerator: Accelerator | None = None,
) -> Report:
    r"""Clean and robust zero-shot accuracy of a `CLIPModel` on registered benchmarks.

    Args:
        model (`CLIPModel`): any CLIP checkpoint, ours or not.
        processor (`CLIPProcessor`): its tokenizer embeds the prompts; its image mean/std normalise the pixels.
        benchmarks (`str` or `Sequence[str]`): names (`pmg-aft datasets list`), comma-separated, or `"all"`.
        protocol (`str`): `"paper"` (TeCoA/PMG-AFT: one prompt per dataset, s = 1) or `"clip_benchmark"`
            (template ensembles, s = 100).
        attacks (`Sequence[str]`): any of `"pgd"` (cross-entropy), `"cw"` (margin loss) and `"autoattack"`.
        eps (`Sequence[float]`): budgets in [0, 1] pixel units.
        steps (`int` or `Sequence[int]`): PGD/CW steps; several values give one result each.
        step_size (`float`, *optional*): PGD/CW step, default 1/255 (the paper's).
        norm (`str`): `"linf"` or `"l2"`.
        max_eval_samples (`int`, *optional*): the first N test samples of each dataset (RobustBench uses 1000).
        batch_size (`int`): per process.
        benchmark_data_dir (`str`, *optional*): folder with local copies, one sub-folder per benchmark.
        output_dir (`str`, *optional*): where per-dataset results are written as they finish; a rerun resumes
            and does not recompute finished datasets. The report (JSON, Markdown, plots) is saved there too.
        logit_scale (`float`, *optional*): overrides the protocol's s.
        mixed_precision (`str`, *optional*): `"no"`, `"bf16"` or `"fp16"` for the PGD/CW forward passes (their
            gradients are loss-scaled under fp16 so they do not underflow); default: the accelerate setting
            (`accelerate launch --mixed_precision`). AutoAttack always runs in float32.
        model_id (`str`, *optional*): recorded in the report.
        datasets (`dict`, *optional*): `{name: dataset or EvalSet}` to evaluate instead of loading benchmarks; a
            dataset keyed by a benchmark's name with its labels gets that benchmark's prompts ([`as_eval_set`]).
        seed (`int`): seed of AutoAttack's random parts.
        accelerator (`accelerate.Accelerator`, *optional*): defaults to a new one; under `accelerate launch` the
            samples are sharded across processes and the results gathered, each sample counted once.

    Returns:
        [`Report`]: per dataset, clean and robust accuracy for every attack setting, with the settings, sample
        count, dataset id and revision, protocol, model id and time; sanity warnings in `report.warnings`.
    """
    check_protocol(protocol)
    accelerator = accelerator or Accelerator()  # reuses an existing state (a Trainer's, a launcher's)
    precision = mixed_precision or accelerator.mixed_precision or "no"
    if precision not in PRECISIONS:
        raise ValueError(f"mixed_precision={precision!r} is not one of {list(PRECISIONS)}.")
    if datasets is None:
        names = EVAL_SUITE if benchmarks == "all" else benchmarks
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",") if n.strip()]
        names = [get_benchmark(n).name for n in names]
    else:
        names = list(datasets)
    settings = attack_settings(attacks, eps, steps, step_size, norm)
    scale = logit_scale if logit_scale is not None else PROTOCOL_LOGIT_SCALE[protocol]
    image_processor = processor.image_processor
    report = Report(
        model=model_id or getattr(model.config, "_name_or_path", "") or "unknown",
        protocol=protocol,
        logit_scale=scale,
        image_mean=[float(v) for v in image_processor.image_mean],
        image_std=[float(v) for v in image_processor.image_std],
        settings=settings,
        max_eval_samples=max_eval_samples,
        model_digest=weights_digest(model),
        mixed_precision=precision,
        seed=seed,
    )
    was_training = model.training
    grad_flags = [p.requires_grad for p in model.parameters()]
    # Attacks need gradients for the pixels only: no parameter gradients are built, kept, or leaked.
    model = model.to(accelerator.device).eval().requires_grad_(False)
    try:
        for name in names:
            # Only data loaded from the Hub has a revision (local copies and given datasets claim none).
            hub = datasets is None and benchmark_data_dir is None and name in BENCHMARKS
            revision = pinned_revision(name) if hub else None
            cached = [_load_result(output_dir, name, report.fingerprint(), revision)]
            broadcast_object_list(cached)  # the main process decides, so all ranks agree
            if cached[0] is not None:
                logger.info("%s: already evaluated in %s, not recomputed.", name, output_dir)
                report.results[name] = cached[0]
                continue
            if datasets is not None:
                eval_set = as_eval_set(name, datasets[name], protocol).take(max_eval_samples)
            else:
                with accelerator.main_process_first():
                    eval_set = benchmark_eval_set(name, protocol, benchmark_data_dir, max_eval_samples)
            result = evaluate_dataset(_classifier(model, processor, eval_set, scale), eval_set, settings,
                                      accelerator, batch_size, precision, seed=seed)  # fmt: skip
            report.results[name] = result
            if output_dir and accelerator.is_main_process:
                _save_result(output_dir, name, report.fingerprint(), result)
            accelerator.wait_for_everyone()
    finally:
        model.train(was_training)
        for param, flag in zip(model.parameters(), grad_flags):
            param.requires_grad_(flag)
    report.warnings = sanity_warnings(report)
    for warning in report.warnings:
        logger.warning(warning)
    if output_dir and accelerator.is_main_process:
        report.save(output_dir)
    return report


def _classifier(model, processor, eval_set: EvalSet, scale: float) -> ZeroShotClassifier:
    image_processor = processor.image_processor
    return ZeroShotClassifier(model, processor.tokenizer, eval_set.class_names, eval_set.templates,
                              image_processor.image_mean, image_processor.image_std, scale)  # fmt: skip


def _result_path(output_dir: str, name: str) -> str:
    return os.path.join(output_dir, "results", f"{name}.json")


def _load_result(output_dir: str | None, name: str, fingerprint: str, revision: str | None) -> dict | None:
    """A finished dataset's result, if it was computed with the same settings, weights and dataset revision."""
    if not output_dir or not os.path.exists(_result_path(output_dir, name)):
        return None
    with open(_result_path(output_dir, name), encoding="utf-8") as f:
        saved = json.load(f)
    same = saved.get("fingerprint") == fingerprint and saved["result"].get("revision") == revision
    return saved["result"] if same else None


def weights_digest(model) -> str:
    """A short hash of the model's weights: results of other weights under the same name are never reused."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def _save_result(output_dir: str, name: str, fingerprint: str, result: dict) -> None:
    os.makedirs(os.path.join(output_dir, "results"), exist_ok=True)
    path = _result_path(output_dir, name)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump({"fingerprint": fingerprint, "result": result}, f, indent=1)
    os.replace(path + ".tmp", path)  # a killed run never leaves a half-written result
