"""The robust zero-shot evaluation suite: clean and adversarial accuracy of any CLIP checkpoint on the benchmarks."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch.utils.data import DataLoader

from ..attacks import NORMS, check_budget, pgd
from ..data import ImageClassificationCollator, get_benchmark, load_benchmark
from ..data.registry import EVAL_SUITE, check_protocol, pinned_revision
from ..zeroshot import DEFAULT_TEMPLATE, ZeroShotClassifier, clean_class_name
from .autoattack import autoattack
from .checks import gradient_health, sanity_warnings
from .report import Report

logger = logging.getLogger(__name__)

ATTACKS = ("pgd", "cw", "autoattack")
PROTOCOL_LOGIT_SCALE = {"paper": 1.0, "clip_benchmark": 100.0}


@dataclass(frozen=True)
class AttackSetting:
    """One attack run: its name, budget and (for PGD/CW) steps and step size."""

    attack: str
    eps: float
    steps: int | None = None
    step_size: float | None = None

    @property
    def key(self) -> str:
        steps = f"-{self.steps}" if self.steps is not None else ""
        return f"{self.attack}{steps}@{self.eps * 255:g}/255"


def attack_settings(
    attacks: Sequence[str], eps: Sequence[float], steps: int | Sequence[int], step_size: float | None, norm: str
) -> list[AttackSetting]:
    """Every (attack, eps, steps) combination to run, validated."""
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown:
        raise ValueError(f"Unknown attack(s) {unknown}; choose from {ATTACKS}.")
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not one of {NORMS}.")
    steps = [int(steps)] if isinstance(steps, int) else [int(s) for s in steps]
    settings = []
    for attack in attacks:
        for budget in eps:
            budget = check_budget("eps", budget, norm)
            if attack == "autoattack":
                settings.append(AttackSetting(attack, budget))
                continue
            for count in steps:
                size = check_budget("step_size", step_size if step_size is not None else 1 / 255, norm)
                settings.append(AttackSetting(attack, budget, count, size))
    return settings


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
    max_samples: int | None = None,
    batch_size: int = 64,
    data_dir: str | None = None,
    output_dir: str | None = None,
    logit_scale: float | None = None,
    mixed_precision: str | None = None,
    model_id: str | None = None,
    datasets: dict | None = None,
    seed: int = 0,
    accelerator=None,
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
        max_samples (`int`, *optional*): the first N test samples of each dataset (RobustBench uses 1000).
        batch_size (`int`): per process.
        data_dir (`str`, *optional*): folder with local copies, one sub-folder per benchmark.
        output_dir (`str`, *optional*): where per-dataset results are written as they finish; a rerun resumes
            and does not recompute finished datasets. The report (JSON, Markdown, plots) is saved there too.
        logit_scale (`float`, *optional*): overrides the protocol's s.
        mixed_precision (`str`, *optional*): `"no"`, `"bf16"` or `"fp16"` for the PGD/CW forward passes (their
            gradients are loss-scaled under fp16 so they do not underflow); default: the accelerate setting
            (`accelerate launch --mixed_precision`). AutoAttack always runs in float32.
        model_id (`str`, *optional*): recorded in the report.
        datasets (`dict`, *optional*): pre-loaded `{name: dataset}` in the common schema (skips loading).
        seed (`int`): seed of AutoAttack's random parts.
        accelerator (`accelerate.Accelerator`, *optional*): defaults to a new one; under `accelerate launch` the
            samples are sharded across processes and the results gathered, each sample counted once.

    Returns:
        [`Report`]: per dataset, clean and robust accuracy for every attack setting, with the settings, sample
        count, dataset id and revision, protocol, model id and time; sanity warnings in `report.warnings`.
    """
    from accelerate import Accelerator
    from accelerate.utils import broadcast_object_list

    check_protocol(protocol)
    accelerator = accelerator or Accelerator()  # reuses an existing state (a Trainer's, a launcher's)
    precision = mixed_precision or accelerator.mixed_precision or "no"
    if precision not in ("no", "bf16", "fp16"):
        raise ValueError(f"mixed_precision={precision!r} is not 'no', 'bf16' or 'fp16'.")
    names = EVAL_SUITE if benchmarks == "all" else benchmarks
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = [get_benchmark(n).name for n in names] if datasets is None else list(datasets)
    settings = attack_settings(attacks, eps, steps, step_size, norm)
    scale = logit_scale if logit_scale is not None else PROTOCOL_LOGIT_SCALE[protocol]
    image_processor = processor.image_processor
    report = Report(
        model=model_id or getattr(model.config, "_name_or_path", "") or "unknown",
        protocol=protocol,
        logit_scale=scale,
        norm=norm,
        image_mean=[float(v) for v in image_processor.image_mean],
        image_std=[float(v) for v in image_processor.image_std],
        settings=[asdict(s) | {"key": s.key} for s in settings],
        max_samples=max_samples,
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
            revision = pinned_revision(name) if name in EVAL_SUITE else None
            cached = [_load_result(output_dir, name, report.fingerprint(), revision)]
            broadcast_object_list(cached)  # the main process decides, so all ranks agree
            if cached[0] is not None:
                logger.info("%s: already evaluated in %s, not recomputed.", name, output_dir)
                report.results[name] = cached[0]
                continue
            if datasets is not None:
                data = datasets[name]
                data = data.select(range(min(max_samples, len(data)))) if max_samples is not None else data
            else:
                with accelerator.main_process_first():
                    data = load_benchmark(name, data_dir=_local(data_dir, name), max_samples=max_samples)
            if len(data) == 0:
                raise ValueError(f"{name} has no samples to evaluate.")
            result = _evaluate_dataset(model, processor, name, data, protocol, scale, settings, norm, batch_size,
                                       accelerator, seed, precision)  # fmt: skip
            result["revision"] = revision
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


def _local(data_dir: str | None, name: str) -> str | None:
    return os.path.join(data_dir, name) if data_dir else None


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


def _autocast(device: torch.device, precision: str):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def _save_result(output_dir: str, name: str, fingerprint: str, result: dict) -> None:
    os.makedirs(os.path.join(output_dir, "results"), exist_ok=True)
    path = _result_path(output_dir, name)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump({"fingerprint": fingerprint, "result": result}, f, indent=1)
    os.replace(path + ".tmp", path)  # a killed run never leaves a half-written result


def _classifier(model, processor, name: str, data, protocol: str, scale: float) -> ZeroShotClassifier:
    bench = get_benchmark(name) if name in EVAL_SUITE else None
    names = data.features["label"].names
    if bench is not None:
        names, templates = bench.prompt_names(names, protocol), bench.templates(protocol)
    else:
        names, templates = [clean_class_name(n) for n in names], [DEFAULT_TEMPLATE]
    return ZeroShotClassifier(
        model,
        processor.tokenizer,
        names,
        templates,
        image_mean=processor.image_processor.image_mean,
        image_std=processor.image_processor.image_std,
        logit_scale=scale,
    )


def _evaluate_dataset(
    model, processor, name, data, protocol, scale, settings, norm, batch_size, accelerator, seed, precision
):
    start = time.time()
    bench = get_benchmark(name) if name in EVAL_SUITE else None
    classifier = _classifier(model, processor, name, data, protocol, scale)
    collator = ImageClassificationCollator(
        image_size=model.config.vision_config.image_size,
        native_resolution=bench.native_resolution if bench else False,
    )
    loader = accelerator.prepare_data_loader(
        DataLoader(data, batch_size=batch_size, shuffle=False, drop_last=False, collate_fn=collator)
    )
    rows, attacks_used, health = [], {}, None
    for batch in loader:
        images, labels = batch["pixel_values"], batch["labels"]
        with _autocast(images.device, precision):
            if health is None:  # under the attacks' precision, where masking would show
                health = gradient_health(classifier, images, labels)
            with torch.no_grad():
                correct = [classifier(images).argmax(-1) == labels]
        for setting in settings:
            if setting.attack == "autoattack":  # float32: pyautoattack does not scale its gradients
                adv, used = autoattack(classifier, images, labels, setting.eps, classifier.num_classes, norm, seed)
                attacks_used[setting.key] = used
            else:
                with _autocast(images.device, precision):
                    adv = pgd(
                        classifier, images, labels, setting.eps, setting.step_size, setting.steps, norm=norm,
                        random_start=False, loss="ce" if setting.attack == "pgd" else "cw", early_stop=True,
                    )  # fmt: skip
            with torch.no_grad(), _autocast(images.device, precision):
                correct.append(classifier(adv).argmax(-1) == labels)
        rows.append(accelerator.gather_for_metrics(torch.stack(correct, dim=1)))
    flags = torch.cat(rows).float().cpu()
    result = {
        "dataset": name,
        "hub_id": bench.hub_id if bench else None,
        "split": bench.split if bench else None,
        "samples": int(flags.shape[0]),
        "num_classes": classifier.num_classes,
        "clean_accuracy": flags[:, 0].mean().item(),
        "robust_accuracy": {s.key: flags[:, i + 1].mean().item() for i, s in enumerate(settings)},
        "autoattack_attacks": attacks_used,
        "gradient_health": health,
        "seconds": round(time.time() - start, 2),
    }
    logger.info("%s: clean %.2f%%, robust %s", name, 100 * result["clean_accuracy"], result["robust_accuracy"])
    return result
