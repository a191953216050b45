"""The evaluation engine: clean and adversarial accuracy of one zero-shot classifier on one eval set.

`Trainer.evaluate` and `evaluate_robustness` both call [`evaluate_dataset`]; samples are sharded across processes by
accelerate and gathered, each counted once.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from accelerate.data_loader import prepare_data_loader
from torch.utils.data import DataLoader

from ..attack_settings import AttackSetting
from ..constants import ATTACK_NUMERICS, MIXED_PRECISIONS
from ..domains import BATCH, WORKERS, field
from ..errors import InputError
from ..metrics import robust_accuracy_metric
from ..parsing import check_fields
from ..zeroshot import ZeroShotClassifier
from .checks import gradient_health
from .eval_set import EvalSet
from .results import DatasetResult

logger = logging.getLogger(__name__)

# The autocast dtype of each precision ("tf32": float32 tensors whose CUDA matmuls use TensorFloat-32).
PRECISIONS = {"no": None, "tf32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
assert tuple(PRECISIONS) == MIXED_PRECISIONS


def effective_precision(precision: str, device: torch.device, numerics: str = "exact") -> str:
    """The precision that runs on `device`: `fp16` is CUDA autocast (`torch.cuda.amp.autocast`, a no-op on a CPU,
    as in the official codes) and `tf32` a CUDA matmul mode, so on other devices both are float32 (`"no"`). With the
    `official` attack numerics fp16 autocast runs on a CPU too, so their effect can be measured without CUDA."""
    if precision not in PRECISIONS:
        raise InputError(f"mixed precision {precision!r} is not one of {list(PRECISIONS)}.")
    if numerics not in ATTACK_NUMERICS:
        raise InputError(f"attack numerics {numerics!r} is not one of {ATTACK_NUMERICS}.")
    if device.type == "cuda" or (precision == "fp16" and numerics == "official"):
        return precision
    return "no" if precision in ("fp16", "tf32") else precision


@contextlib.contextmanager
def tf32_matmuls():
    """TensorFloat-32 for CUDA matmuls and cuDNN convolutions inside the block; the previous settings after it."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def autocast(device: torch.device, precision: str, numerics: str = "exact"):
    """Autocast for `"bf16"` / `"fp16"`, TF32 matmuls for `"tf32"` (CUDA only, see [`effective_precision`]),
    nothing for `"no"`."""
    precision = effective_precision(precision, device, numerics)
    if precision == "tf32":
        return tf32_matmuls()
    dtype = PRECISIONS[precision]
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def start_noise(indices: torch.Tensor, shape: tuple[int, ...], seed: int, salt: int, device) -> torch.Tensor:
    """Uniform noise in [-1, 1] for each sample's random start, drawn from a generator seeded by (seed, setting,
    sample index): a sample's start, hence its result, does not depend on the batch size or the process count."""
    noise = torch.empty((len(indices), *shape), device=device)
    for row, index in enumerate(indices.tolist()):
        generator = torch.Generator(device=device).manual_seed(((seed * 1_000_003 + salt) * 1_000_033 + index) % 2**63)
        noise[row] = torch.rand(shape, generator=generator, device=device) * 2 - 1
    return noise


class IndexedRows(torch.utils.data.Dataset):
    """A dataset's rows with their index, so each sample can be seeded by its place in the eval set."""

    def __init__(self, data) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        return index, self.data[index]


class IndexedCollator:
    """An eval set's collator that also returns the rows' indices."""

    def __init__(self, collator) -> None:
        self.collator = collator

    def __call__(self, rows) -> dict:
        batch = self.collator([row for _, row in rows])
        batch["indices"] = torch.tensor([index for index, _ in rows])
        return batch


@dataclass(frozen=True, kw_only=True)
class EvalLoader:
    """How the engine reads an eval set: the batch size per process, data-loader workers and pinned memory."""

    batch_size: int = field(default=64, domain=BATCH)
    num_workers: int = field(default=0, domain=WORKERS)
    pin_memory: bool | None = None  # `None`: on CUDA

    def __post_init__(self) -> None:
        check_fields(self)

    def loader(self, eval_set: EvalSet, image_size: int, accelerator) -> DataLoader:
        """The eval set's batches (with their row indices), sharded across processes, each sample once."""
        pin = accelerator.device.type == "cuda" if self.pin_memory is None else self.pin_memory
        loader = DataLoader(
            IndexedRows(eval_set.dataset),
            batch_size=self.batch_size,
            shuffle=False,
            drop_last=False,  # every sample counts once
            collate_fn=IndexedCollator(eval_set.collator(image_size)),
            num_workers=self.num_workers,
            pin_memory=pin,
        )
        # Sharded like accelerator.prepare_data_loader, but not registered with the accelerator: a trainer evaluating
        # every epoch would otherwise keep every eval loader (and its dataset) alive for the whole run.
        return prepare_data_loader(loader, accelerator.device, num_processes=accelerator.num_processes,
                                   process_index=accelerator.process_index, split_batches=accelerator.split_batches,
                                   put_on_device=True, even_batches=accelerator.even_batches)  # fmt: skip


def run_attack(
    classifier: ZeroShotClassifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    setting: AttackSetting,
    *,
    precision: str = "no",
    seed: int = 0,
    start: torch.Tensor | None = None,
    numerics: str = "exact",
    gradient_stats: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[str] | None]:
    """Adversarial images for one setting; per sample, whether every iterate before the last was still classified
    correctly; and for AutoAttack the attacks that ran (`None` otherwise). `start` is PGD's random-start noise;
    `numerics` the protocol's `attack_numerics`; `gradient_stats` collects PGD's first-step zero gradients."""
    with autocast(images.device, setting.spec.precision(precision, numerics), numerics):
        return setting.spec.run(classifier, images, labels, setting, seed=seed, start=start, numerics=numerics,
                                gradient_stats=gradient_stats)  # fmt: skip


def evaluate_dataset(
    classifier: ZeroShotClassifier,
    eval_set: EvalSet,
    *,
    settings: Sequence[AttackSetting],
    accelerator,
    loader: EvalLoader = EvalLoader(),
    precision: str = "no",
    seed: int = 0,
    numerics: str = "exact",
) -> DatasetResult:
    """Clean accuracy and robust accuracy under each attack setting, on every sample of `eval_set`.

    Args:
        classifier (`ZeroShotClassifier`): the head over `eval_set.class_names` (pixels in [0, 1] in).
        eval_set (`EvalSet`): the data, its preprocessing and provenance.
        settings (`Sequence[AttackSetting]`): the attacks; each sample is attacked from its clean image.
        accelerator (`accelerate.Accelerator`): shards the samples across processes and gathers the results.
        loader ([`EvalLoader`]): batch size per process, workers, pinned memory.
        precision (`str`): `"no"`, `"tf32"`, `"bf16"` or `"fp16"` (CUDA autocast) for PGD/CW and the predictions;
            AutoAttack runs and is judged in float32.
        seed (`int`): seeds each sample's random start (with its index in the eval set, so results do not depend on
            the batch size or the process count) and AutoAttack; the caller's random state is left as it was
            (training continues as if nothing had run).
        numerics (`str`): `"exact"` or `"official"` (the batch-mean loss and unscaled fp16 backward of the official
            evaluations, AutoAttack under autocast; see [`Protocol`]). The classifier's logits follow its own
            `float32_logits`.

    Returns:
        [`DatasetResult`]: the accuracies (from the `robust_accuracy` metric, [`robust_accuracy_metric`]; the worst
        case counts a sample only if it survives every attack and every iterate run on it), the eval set's
        provenance, the AutoAttack plans that ran, the gradient health and the time taken.
    """
    if len(eval_set) == 0:
        raise InputError(f"{eval_set.name} has no samples to evaluate.")
    began = time.time()
    rows, attacks_used, health = [], {}, None
    stats = {s.key: {} for s in settings if s.spec.iterative}
    devices = [accelerator.device] if accelerator.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed + accelerator.process_index)
        for batch in loader.loader(eval_set, classifier.image_size, accelerator):
            images, labels = batch["pixel_values"], batch["labels"]
            if health is None:  # under the attacks' precision, where masking would show
                with autocast(images.device, precision, numerics):
                    health = gradient_health(classifier, images, labels)
            row = _attack_batch(classifier, batch, settings, precision, seed, attacks_used, numerics, stats)
            rows.append(accelerator.gather_for_metrics(row))
    result = _score(torch.cat(rows).cpu(), settings, eval_set, classifier.num_classes)
    result.autoattack_attacks, result.gradient_health = attacks_used, health
    result.first_step_zero_gradient = _zero_fractions(stats, accelerator)
    result.seconds = round(time.time() - began, 2)
    logger.info("%s: clean %.2f%%, robust %s", eval_set.name, 100 * result.clean_accuracy, result.robust_accuracy)
    return result


def _zero_fractions(stats: dict, accelerator) -> dict[str, float]:
    """Per PGD/CW setting, the share of first-step input-gradient entries that were exactly 0, over all processes."""
    fractions = {}
    for key, counts in stats.items():
        totals = torch.tensor([counts.get("entries", 0), counts.get("zero_entries", 0)], device=accelerator.device)
        entries, zeros = accelerator.reduce(totals, reduction="sum").tolist()
        if entries:
            fractions[key] = zeros / entries
    return fractions


def _attack_batch(classifier, batch: dict, settings, precision: str, seed: int, attacks_used: dict,
                  numerics: str = "exact", stats: dict | None = None) -> torch.Tensor:  # fmt: skip
    """One row per sample: its label, clean prediction, each attack's prediction and each attack's survival flag."""
    images, labels = batch["pixel_values"], batch["labels"]
    with torch.no_grad(), autocast(images.device, precision, numerics):
        predictions = [classifier(images).argmax(-1)]
    survivors = []
    for salt, setting in enumerate(settings):
        start = None
        if setting.random_start and setting.norm == "linf" and setting.spec.iterative:
            start = start_noise(batch["indices"], tuple(images.shape[1:]), seed, salt, images.device)
        adversarial, survived, used = run_attack(classifier, images, labels, setting, precision=precision, seed=seed,
                                                 start=start, numerics=numerics,
                                                 gradient_stats=(stats or {}).get(setting.key))  # fmt: skip
        if used is not None:
            attacks_used[setting.key] = used
        # Images are judged in the precision the attack ran in (AutoAttack: float32 with the exact numerics).
        with torch.no_grad(), autocast(images.device, setting.spec.precision(precision, numerics), numerics):
            predictions.append(classifier(adversarial).argmax(-1))
        survivors.append(survived)
    return torch.stack([labels, *predictions, *[s.long() for s in survivors]], dim=1)


def _score(table: torch.Tensor, settings, eval_set: EvalSet, num_classes: int) -> DatasetResult:
    """The accuracies of the gathered rows of [`_attack_batch`], through the `robust_accuracy` metric."""
    attacks = len(settings)
    scores = robust_accuracy_metric().compute(
        references=table[:, 0].tolist(),
        predictions=table[:, 1].tolist(),
        adversarial_predictions=table[:, 2 : 2 + attacks].tolist(),
        survived=table[:, 2 + attacks :].bool().tolist(),
    )
    return DatasetResult(
        dataset=eval_set.name,
        **eval_set.provenance(),
        samples=scores["samples"],
        num_classes=num_classes,
        clean_accuracy=scores["clean_accuracy"],
        robust_accuracy={s.key: scores["robust_accuracy"][i] for i, s in enumerate(settings)},
        worst_case_accuracy=scores["worst_case_accuracy"],
    )
