"""The evaluation engine: clean and adversarial accuracy of one zero-shot classifier on one eval set.

`Trainer.evaluate` and `evaluate_robustness` both call [`evaluate_dataset`]; samples are sharded across processes by
accelerate and gathered, each counted once.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence

import torch
from accelerate.data_loader import prepare_data_loader
from torch.utils.data import DataLoader

from ..attacks import AttackSetting, pgd
from ..metrics import robust_accuracy_metric
from ..zeroshot import ZeroShotClassifier
from .autoattack import autoattack
from .checks import gradient_health
from .eval_set import EvalSet

logger = logging.getLogger(__name__)

# "tf32": float32 tensors whose CUDA matmuls and convolutions use TensorFloat-32 (10-bit mantissa inputs).
PRECISIONS = {"no": None, "tf32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def effective_precision(precision: str, device: torch.device) -> str:
    """The precision that runs on `device`: `fp16` is CUDA autocast (`torch.cuda.amp.autocast`, a no-op on a CPU,
    as in the official codes) and `tf32` a CUDA matmul mode, so on other devices both are float32 (`"no"`)."""
    if precision not in PRECISIONS:
        raise ValueError(f"mixed precision {precision!r} is not one of {list(PRECISIONS)}.")
    return "no" if precision in ("fp16", "tf32") and device.type != "cuda" else precision


@contextlib.contextmanager
def tf32_matmuls():
    """TensorFloat-32 for CUDA matmuls and cuDNN convolutions inside the block; the previous settings after it."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def autocast(device: torch.device, precision: str):
    """Autocast for `"bf16"` / `"fp16"`, TF32 matmuls for `"tf32"` (CUDA only, see [`effective_precision`]),
    nothing for `"no"`."""
    precision = effective_precision(precision, device)
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


def run_attack(
    classifier: ZeroShotClassifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    setting: AttackSetting,
    precision: str = "no",
    seed: int = 0,
    start: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[str] | None]:
    """Adversarial images for one setting; per sample, whether every iterate before the last was still classified
    correctly; and for AutoAttack the attacks that ran (`None` otherwise). `start` is PGD's random-start noise."""
    if setting.attack == "autoattack":  # float32: pyautoattack does not scale its gradients
        adversarial, used = autoattack(classifier, images, labels, setting.eps, classifier.num_classes, setting.norm,
                                       seed, setting.variant)  # fmt: skip
        return adversarial, torch.ones_like(labels, dtype=torch.bool), used  # its output is already the worst case
    with autocast(images.device, precision):
        adversarial, survived = pgd(classifier, images, labels, **setting.pgd_kwargs(), return_survivors=True,
                                    start=start)  # fmt: skip
    return adversarial, survived, None


def evaluate_dataset(
    classifier: ZeroShotClassifier,
    eval_set: EvalSet,
    settings: Sequence[AttackSetting],
    accelerator,
    batch_size: int = 64,
    precision: str = "no",
    num_workers: int = 0,
    pin_memory: bool = False,
    seed: int = 0,
) -> dict:
    """Clean accuracy and robust accuracy under each attack setting, on every sample of `eval_set`.

    Args:
        classifier (`ZeroShotClassifier`): the head over `eval_set.class_names` (pixels in [0, 1] in).
        eval_set (`EvalSet`): the data, its preprocessing and provenance.
        settings (`Sequence[AttackSetting]`): the attacks; each sample is attacked from its clean image.
        accelerator (`accelerate.Accelerator`): shards the samples across processes and gathers the results.
        batch_size (`int`): per process.
        precision (`str`): `"no"`, `"tf32"`, `"bf16"` or `"fp16"` (CUDA autocast) for PGD/CW and the predictions;
            AutoAttack runs and is judged in float32.
        num_workers, pin_memory: the data loader's.
        seed (`int`): seeds each sample's random start (with its index in the eval set, so results do not depend on
            the batch size or the process count) and AutoAttack; the caller's random state is left as it was
            (training continues as if nothing had run).

    Returns:
        `dict`: `dataset`, the eval set's provenance, `samples`, `num_classes`, `clean_accuracy`, `robust_accuracy`
        (`{setting.key: accuracy}`), `worst_case_accuracy` (a sample counts only if it survives every attack and every
        iterate run on it), `autoattack_attacks`, `gradient_health` and `seconds`. The numbers come from the
        `robust_accuracy` metric ([`pmg_aft.metrics.robust_accuracy_metric`]).
    """
    if len(eval_set) == 0:
        raise ValueError(f"{eval_set.name} has no samples to evaluate.")
    began = time.time()
    loader = DataLoader(
        IndexedRows(eval_set.dataset),
        batch_size=batch_size,
        shuffle=False,
        drop_last=False,  # every sample counts once
        collate_fn=IndexedCollator(eval_set.collator(classifier.image_size)),
        num_workers=num_workers,
        pin_memory=pin_memory,
    )
    # Sharded like accelerator.prepare_data_loader, but not registered with the accelerator: a trainer evaluating
    # every epoch would otherwise keep every eval loader (and its dataset) alive for the whole run.
    loader = prepare_data_loader(loader, accelerator.device, num_processes=accelerator.num_processes,
                                 process_index=accelerator.process_index, split_batches=accelerator.split_batches,
                                 put_on_device=True, even_batches=accelerator.even_batches)  # fmt: skip
    rows, attacks_used, health = [], {}, None
    devices = [accelerator.device] if accelerator.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed + accelerator.process_index)
        for batch in loader:
            images, labels = batch["pixel_values"], batch["labels"]
            with autocast(images.device, precision):
                if health is None:  # under the attacks' precision, where masking would show
                    health = gradient_health(classifier, images, labels)
                with torch.no_grad():
                    predictions = [classifier(images).argmax(-1)]
            survivors = []
            for salt, setting in enumerate(settings):
                start = None
                if setting.random_start and setting.norm == "linf" and setting.attack != "autoattack":
                    start = start_noise(batch["indices"], tuple(images.shape[1:]), seed, salt, images.device)
                adversarial, survived, used = run_attack(classifier, images, labels, setting, precision, seed, start)
                if used is not None:
                    attacks_used[setting.key] = used
                # AutoAttack's images are judged in the precision it ran in (float32).
                judged = "no" if setting.attack == "autoattack" else precision
                with torch.no_grad(), autocast(images.device, judged):
                    predictions.append(classifier(adversarial).argmax(-1))
                survivors.append(survived)
            # One row per sample: label, clean prediction, each attack's prediction, each attack's survival flag.
            row = torch.stack([labels, *predictions, *[s.long() for s in survivors]], dim=1)
            rows.append(accelerator.gather_for_metrics(row))
    table = torch.cat(rows).cpu()
    attacks = len(settings)
    scores = robust_accuracy_metric().compute(
        references=table[:, 0].tolist(),
        predictions=table[:, 1].tolist(),
        adversarial_predictions=table[:, 2 : 2 + attacks].tolist(),
        survived=table[:, 2 + attacks :].bool().tolist(),
    )
    result = {
        "dataset": eval_set.name,
        **eval_set.provenance(),
        "samples": scores["samples"],
        "num_classes": classifier.num_classes,
        "clean_accuracy": scores["clean_accuracy"],
        "robust_accuracy": {s.key: scores["robust_accuracy"][i] for i, s in enumerate(settings)},
        "worst_case_accuracy": scores["worst_case_accuracy"],
        "autoattack_attacks": attacks_used,
        "gradient_health": health,
        "seconds": round(time.time() - began, 2),
    }
    logger.info(
        "%s: clean %.2f%%, robust %s", eval_set.name, 100 * result["clean_accuracy"], result["robust_accuracy"]
    )
    return result
