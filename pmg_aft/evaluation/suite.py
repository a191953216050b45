"""The robust zero-shot evaluation suite: clean and adversarial accuracy of any CLIP checkpoint on the benchmarks."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Sequence

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from filelock import FileLock, Timeout

from ..data import EVAL_SUITE, get_benchmark
from ..zeroshot import ZeroShotClassifier
from .checks import sanity_warnings
from .engine import effective_precision, evaluate_dataset
from .eval_set import as_eval_set, benchmark_eval_set
from .protocols import Protocol, get_protocol
from .report import Report

logger = logging.getLogger(__name__)


def evaluate_robustness(
    model,
    processor,
    benchmarks: str | Sequence[str] = "all",
    protocol: str | Protocol = "pmg_aft",
    attacks: Sequence[str] | None = None,
    eps: Sequence[float] | None = None,
    steps: int | Sequence[int] | None = None,
    step_size: float | None = None,
    norm: str | None = None,
    random_start: bool | None = None,
    first_success: bool | None = None,
    autoattack: str | None = None,
    max_eval_samples: int | None = None,
    logit_scale: float | None = None,
    normalization: str | None = None,
    mixed_precision: str | None = None,
    batch_size: int = 64,
    benchmark_data_dir: str | None = None,
    output_dir: str | None = None,
    model_id: str | None = None,
    datasets: dict | None = None,
    seed: int = 0,
    accelerator: Accelerator | None = None,
    on_bad_image: str = "raise",
    num_workers: int = 0,
    pin_memory: bool | None = None,
) -> Report:
    r"""Clean, per-attack and per-sample worst-case robust zero-shot accuracy of a `CLIPModel` under a protocol.

    Args:
        model (`CLIPModel`): any CLIP checkpoint, ours or not.
        processor (`CLIPProcessor`): its tokenizer embeds the prompts; its mean/std normalise where the protocol
            uses the model's own (`clip_benchmark`).
        benchmarks (`str` or `Sequence[str]`): names (`pmg-aft datasets list`), comma-separated, or `"all"` (the 16).
        protocol (`str` or [`Protocol`]): `"pmg_aft"` (the official PMG-AFT evaluation), `"tga_zsr"` (TGA-ZSR's
            re-run) or `"clip_benchmark"` (FARE / RobustBench); see `pmg_aft.evaluation.PROTOCOL_RECORDS`.
        attacks, eps, steps, step_size, norm, random_start, first_success, autoattack, max_eval_samples, logit_scale,
        normalization, mixed_precision: override the protocol's field of that name (`None` keeps it); the report
            lists what was overridden.
        batch_size (`int`): per process.
        benchmark_data_dir (`str`, *optional*): folder with local copies, one sub-folder per benchmark.
        output_dir (`str`, *optional*): where per-dataset results are written as they finish; a rerun resumes
            and does not recompute finished datasets. The report (JSON, Markdown, plots) is saved there too.
        model_id (`str`, *optional*): recorded in the report.
        datasets (`dict`, *optional*): `{name: dataset or EvalSet}` to evaluate instead of loading benchmarks; a
            dataset keyed by a benchmark's name with its labels gets that benchmark's texts ([`as_eval_set`]).
        seed (`int`): seeds random starts and AutoAttack.
        accelerator (`accelerate.Accelerator`, *optional*): defaults to a new one; under `accelerate launch` the
            samples are sharded across processes and the results gathered, each sample counted once.
        on_bad_image (`str`): `"raise"` or `"skip"` undecodable images of the benchmarks.
        num_workers (`int`): data-loader worker processes decoding and resizing images beside the attack.
        pin_memory (`bool`, *optional*): page-locked batches for asynchronous copies; default: on CUDA.

    Returns:
        [`Report`]: per dataset, clean accuracy, robust accuracy for every attack setting and the worst case over
        all of them, with the effective protocol (and its overridden fields), the settings, sample counts, dataset
        ids and revisions, model id and digest, and time; sanity warnings in `report.warnings`.
    """
    record = get_protocol(protocol).override(
        attacks=attacks, eps=eps, steps=steps, step_size=step_size, norm=norm, random_start=random_start,
        first_success=first_success, autoattack=autoattack, max_eval_samples=max_eval_samples,
        logit_scale=logit_scale, normalization=normalization, mixed_precision=mixed_precision,
    )  # fmt: skip
    accelerator = accelerator or Accelerator()  # reuses an existing state (a Trainer's, a launcher's)
    if datasets is None:
        names = EVAL_SUITE if benchmarks == "all" else benchmarks
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",") if n.strip()]
        names = [get_benchmark(n).name for n in names]
    else:
        names = list(datasets)
    image_mean, image_std = record.image_stats(processor)
    precision = effective_precision(record.mixed_precision, accelerator.device)
    pinned = accelerator.device.type == "cuda" if pin_memory is None else pin_memory
    scale = record.logit_scale if record.logit_scale is not None else float(model.logit_scale.exp())
    report = Report(
        model=model_id or getattr(model.config, "_name_or_path", "") or "unknown",
        protocol=record.name,
        logit_scale=scale,
        image_mean=image_mean,
        image_std=image_std,
        settings=record.settings(),
        max_eval_samples=record.max_eval_samples,
        model_digest=weights_digest(model),
        mixed_precision=precision,
        seed=seed,
        protocol_record=record.to_dict(),
        overrides=list(record.overridden),
    )
    was_training = model.training
    grad_flags = [p.requires_grad for p in model.parameters()]
    # Attacks need gradients for the pixels only: no parameter gradients are built, kept, or leaked.
    model = model.to(accelerator.device).eval().requires_grad_(False)
    with output_lock(output_dir, accelerator):
        try:
            for name in names:
                if datasets is not None:
                    defaults = dict(crop_pct=record.crop_pct, interpolation=record.interpolation)
                    eval_set = as_eval_set(name, datasets[name], record, **defaults)
                    eval_set = eval_set.take(record.max_eval_samples, record.sample_seed)
                else:
                    with accelerator.main_process_first():
                        eval_set = benchmark_eval_set(name, record, benchmark_data_dir, record.max_eval_samples,
                                                      on_bad_image)  # fmt: skip
                digest = eval_set.digest()  # on every process, from the same data: nothing to wait for if it fails
                cached = [_load_result(output_dir, name, report.fingerprint(), digest)]
                broadcast_object_list(cached)  # the main process decides, so all ranks agree
                if cached[0] is not None:
                    logger.info("%s: already evaluated in %s on the same data, not recomputed.", name, output_dir)
                    report.results[name] = cached[0]
                    continue
                classifier = ZeroShotClassifier(model, processor.tokenizer, eval_set.class_names, eval_set.templates,
                                                image_mean, image_std, scale)  # fmt: skip
                result = evaluate_dataset(classifier, eval_set, report.settings, accelerator, batch_size, precision,
                                          num_workers, pinned, seed)  # fmt: skip
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


class OutputDirBusyError(RuntimeError):
    """Another evaluation is writing into the same output folder."""


LOCK_FILE = ".pmg_aft_eval.lock"


@contextlib.contextmanager
def output_lock(output_dir: str | None, accelerator: Accelerator):
    """Hold `output_dir` for this evaluation: a second one started into the same folder stops at once with
    [`OutputDirBusyError`] instead of both writing a report and one run's results being lost. The lock is an OS file
    lock, released when the process ends, however it ends (a killed run leaves no stale lock)."""
    if not output_dir:
        yield
        return
    lock, problem = None, [None]
    if accelerator.is_main_process:
        try:
            os.makedirs(output_dir, exist_ok=True)
            lock = FileLock(os.path.join(output_dir, LOCK_FILE))
            lock.acquire(timeout=0)
        except Timeout:
            problem[0] = (
                f"another evaluation is writing into {output_dir} (it holds {os.path.join(output_dir, LOCK_FILE)}); "
                "wait for it to finish (a rerun then resumes its results) or pass another output folder."
            )
        except OSError as error:
            problem[0] = f"cannot write into {output_dir}: {error}"
    broadcast_object_list(problem)  # every process stops, not only the main one
    if problem[0] is not None:
        raise OutputDirBusyError(problem[0])
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def _result_path(output_dir: str, name: str) -> str:
    return os.path.join(output_dir, "results", f"{name}.json")


def _load_result(output_dir: str | None, name: str, fingerprint: str, data_digest: str) -> dict | None:
    """A finished dataset's result, if it was computed with the same settings and weights on the same data.

    A result file that cannot be read (a disk that filled up mid-write, an edit) is named in a warning and
    recomputed.
    """
    path = _result_path(output_dir, name) if output_dir else None
    if path is None or not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        result = saved["result"]
        same = saved.get("fingerprint") == fingerprint and result.get("data_digest") == data_digest
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        logger.warning("%s cannot be read (%s: %s); %s is evaluated again.", path, type(error).__name__, error, name)
        return None
    if not same:
        logger.info("%s holds a result of other settings, weights or data; %s is evaluated again.", path, name)
    return result if same else None


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
