"""The robust zero-shot evaluation suite: clean and adversarial accuracy of any CLIP checkpoint on the benchmarks."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import replace

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list

from ..data import EVAL_SUITE, get_benchmark
from ..errors import InputError
from ..outputs import OutputDirBusyError, check_output_dir, output_lock
from ..provenance import weights_digest
from ..zeroshot import ZeroShotClassifier
from .checks import sanity_warnings
from .engine import EvalLoader, effective_precision, evaluate_dataset
from .eval_set import EvalSet, as_eval_set, benchmark_eval_set
from .protocols import Protocol, get_protocol
from .report import Report
from .results import DatasetResult
from .resume import claim_results, load_result, save_result

__all__ = ["OutputDirBusyError", "evaluate_robustness", "output_lock", "weights_digest"]

logger = logging.getLogger(__name__)


def evaluate_robustness(
    model,
    processor,
    protocol: str | Protocol = "pmg_aft",
    *,
    benchmarks: str | Sequence[str] = "all",
    datasets: dict | None = None,
    output_dir: str | None = None,
    model_id: str | None = None,
    loader: EvalLoader | None = None,
    benchmark_data_dir: str | None = None,
    on_bad_image: str = "raise",
    seed: int = 0,
    accelerator: Accelerator | None = None,
    overwrite_output_dir: bool = False,
) -> Report:
    r"""Clean, per-attack and per-sample worst-case robust zero-shot accuracy of a `CLIPModel` under a protocol.

    Args:
        model (`CLIPModel`): any CLIP checkpoint, ours or not.
        processor (`CLIPProcessor`): its tokenizer embeds the prompts; its mean/std normalise where the protocol
            uses the model's own (`clip_benchmark`).
        protocol (`str` or [`Protocol`]): `"pmg_aft"` (the official PMG-AFT evaluation), `"tga_zsr"` (TGA-ZSR's
            re-run) or `"clip_benchmark"` (FARE / RobustBench); see `pmg_aft.evaluation.PROTOCOL_RECORDS`. Change any
            of its fields with [`Protocol.override`], e.g. `get_protocol("pmg_aft").override(eps=(4/255,),
            max_eval_samples=500)`: the report lists what was overridden.
        benchmarks (`str` or `Sequence[str]`): names (`pmg-aft datasets list`), comma-separated, or `"all"` (the 16).
        datasets (`dict`, *optional*): `{name: dataset or EvalSet}` to evaluate instead of loading benchmarks; a
            dataset keyed by a benchmark's name with its labels gets that benchmark's texts ([`as_eval_set`]).
        output_dir (`str`, *optional*): where per-dataset results are written as they finish; a rerun resumes
            and does not recompute finished datasets. The report (JSON, Markdown, plots) is saved there too.
        model_id (`str`, *optional*): recorded in the report.
        loader ([`EvalLoader`], *optional*): batch size per process (default 64), data-loader workers, pinned memory.
        benchmark_data_dir (`str`, *optional*): folder with local copies, one sub-folder per benchmark.
        on_bad_image (`str`): `"raise"` or `"skip"` undecodable images of the benchmarks.
        seed (`int`): seeds random starts and AutoAttack.
        accelerator (`accelerate.Accelerator`, *optional*): defaults to a new one; under `accelerate launch` the
            samples are sharded across processes and the results gathered, each sample counted once.
        overwrite_output_dir (`bool`): replace another model's evaluation in `output_dir` (without it, a folder
            holding one is refused).

    Returns:
        [`Report`]: per dataset a [`DatasetResult`] (clean accuracy, robust accuracy for every attack setting and the
        worst case over all of them, sample counts, dataset ids and revisions), with the effective protocol (and its
        overridden fields), the settings, the model id and digest, and sanity warnings in `report.warnings`.
    """
    record = get_protocol(protocol)
    accelerator = accelerator or Accelerator()  # reuses an existing state (a Trainer's, a launcher's)
    loader = loader or EvalLoader()
    names = list(datasets) if datasets is not None else benchmark_names(benchmarks)
    report = new_report(model, processor, record, accelerator, model_id or "", seed)
    if output_dir:
        check_output_dir(output_dir)
    with output_lock(output_dir, accelerator, "evaluation"), frozen_for_attacks(model, accelerator) as model:
        if accelerator.is_main_process:
            claim_results(output_dir, report.model_digest, overwrite_output_dir)
        accelerator.wait_for_everyone()
        for name in names:
            data = datasets[name] if datasets is not None else None
            eval_set = suite_eval_set(name, record, data, benchmark_data_dir, on_bad_image, accelerator)
            report.results[name] = cached_result(output_dir, name, report, eval_set) or run_dataset(
                model, processor, name, eval_set, report, loader, accelerator, output_dir
            )
        report.warnings = sanity_warnings(report)
        for warning in report.warnings:
            logger.warning(warning)
        if output_dir and accelerator.is_main_process:
            report.save(output_dir)
    return report


def suite_eval_set(name: str, record: Protocol, data, benchmark_data_dir, on_bad_image: str, accelerator) -> EvalSet:
    """The eval set `name` under the protocol: `data` given by the caller ([`as_eval_set`], cut to the protocol's
    sample), else the registered benchmark, loaded by the main process first (the others then read its cache)."""
    if data is not None:
        eval_set = as_eval_set(name, data, record, crop_pct=record.crop_pct, interpolation=record.interpolation)
        return eval_set.take(record.max_eval_samples, record.sample_seed)
    with accelerator.main_process_first():
        return benchmark_eval_set(name, record, benchmark_data_dir=benchmark_data_dir,
                                  max_eval_samples=record.max_eval_samples, on_bad_image=on_bad_image)  # fmt: skip


def run_dataset(model, processor, name: str, eval_set: EvalSet, report: Report, loader: EvalLoader, accelerator,
                output_dir: str | None) -> DatasetResult:  # fmt: skip
    """Evaluate `eval_set` as `report` says (its head, settings, precision and seed); save its result as `name`."""
    record = report.protocol_record
    official = record is not None and record.attack_numerics == "official"
    # FARE's ImageNet: the checkpoint's own scale, whatever the protocol's.
    scale = float(model.logit_scale.detach().exp()) if eval_set.logit_scale == "model" else report.logit_scale
    classifier = ZeroShotClassifier(model, processor.tokenizer, eval_set.class_names, eval_set.templates,
                                    report.image_mean, report.image_std, scale,
                                    float32_logits=not official)  # fmt: skip
    if official and record.official_batch_size:  # a batch-mean loss: the official batch, per process
        loader = replace(loader, batch_size=record.official_batch_size)
    result = evaluate_dataset(classifier, eval_set, settings=report.settings, accelerator=accelerator, loader=loader,
                              precision=report.mixed_precision, seed=report.seed,
                              numerics="official" if official else "exact")  # fmt: skip
    if scale != report.logit_scale:
        result.logit_scale = scale
    if output_dir and accelerator.is_main_process:
        save_result(output_dir, name, report.fingerprint(), report.model_digest, result)
    accelerator.wait_for_everyone()
    return result


def benchmark_names(benchmarks: str | Sequence[str]) -> list[str]:
    """Registry names from `"all"`, a comma-separated string or a list (an unknown name lists the valid ones)."""
    names = EVAL_SUITE if benchmarks == "all" else benchmarks
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names:
        raise InputError(f"benchmarks={benchmarks!r} names no benchmark: give `all` or comma-separated names "
                         "(pmg-aft datasets list).")  # fmt: skip
    return [get_benchmark(n).name for n in names]


def new_report(model, processor, record: Protocol, accelerator, model_id: str, seed: int) -> Report:
    """An empty report of `model` under the protocol `record`: how its numbers will be obtained."""
    image_mean, image_std = record.image_stats(processor)
    return Report(
        model=model_id or getattr(model.config, "_name_or_path", "") or "unknown",
        protocol=record.name,
        logit_scale=record.logit_scale if record.logit_scale is not None else float(model.logit_scale.detach().exp()),
        image_mean=image_mean,
        image_std=image_std,
        settings=record.settings(),
        max_eval_samples=record.max_eval_samples,
        model_digest=weights_digest(model),
        mixed_precision=effective_precision(record.mixed_precision, accelerator.device, record.attack_numerics),
        seed=seed,
        protocol_record=record,
        overrides=list(record.overridden),
    )


def cached_result(output_dir: str | None, name: str, report: Report, eval_set: EvalSet):
    """The saved result of `name` if it holds the report's settings on this data (the main process decides)."""
    digest = eval_set.digest()  # on every process, from the same data: nothing to wait for if it fails
    cached = [load_result(output_dir, name, report.fingerprint(), digest)]
    broadcast_object_list(cached)  # the main process decides, so all ranks agree
    if cached[0] is not None:
        logger.info("%s: already evaluated in %s on the same data, not recomputed.", name, output_dir)
    return cached[0]


@contextlib.contextmanager
def frozen_for_attacks(model, accelerator):
    """`model` on the device in eval mode with no parameter gradients: attacks need gradients for the pixels only,
    so none are built, kept or leaked. Its mode and `requires_grad` flags are restored afterwards."""
    was_training = model.training
    grad_flags = [p.requires_grad for p in model.parameters()]
    model = model.to(accelerator.device).eval().requires_grad_(False)
    try:
        yield model
    finally:
        model.train(was_training)
        for param, flag in zip(model.parameters(), grad_flags):
            param.requires_grad_(flag)
