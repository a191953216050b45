"""`TGAZSRConfig`: TGA-ZSR's hyper-parameters, defaulting to the official recipe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..domains import NON_NEGATIVE, field
from ..pixels import LogitScale
from .base_config import TECOA_FAMILY, RobustCLIPConfig, cite

CODE = "TGA-ZSR.py (official code)"
OPTIMISATION = f"{CODE}: SGD(momentum=0.9, weight_decay=0) on the visual tower, 1000 warm-up steps, cosine_lr"


@cite({
    "train_eps": f"{CODE}: --train_eps 1 (/255)", "train_step_size": f"{CODE}: --train_stepsize 1 (/255)",
    "train_steps": f"{CODE}: --train_numsteps 2",
    "attack_random_start": "attacks.py attack_pgd: delta uniform in [-eps, eps], final iterate",
    "logit_scale": f"{CODE}: model.logit_scale.exp(), clamped at ln 100",
    "image_mean": "models/model.py: CLIP's mean (named IMAGENET_MEAN there)",
    "image_std": "models/model.py: CLIP's std (named IMAGENET_STD there)",
    "prompt_template": f"{CODE}: 'This is a photo of a {{}}'",
    "crop_pct": "utils.py load_train_dataset: Resize(256) + CenterCrop(224)",
    "interpolation": "torchvision Resize's default (bilinear)",
    "optim": OPTIMISATION, "weight_decay": OPTIMISATION, "lr_scheduler_type": OPTIMISATION,
    "warmup_steps": OPTIMISATION, "learning_rate": f"{CODE}: --learning_rate 1e-4",
    "per_device_train_batch_size": f"{CODE}: --batch_size 128", "max_grad_norm": f"{CODE}: no gradient clipping",
})  # fmt: skip
@dataclass
class TGAZSRConfig(RobustCLIPConfig):
    r"""Arguments of [`TGAZSRTrainer`]: TGA-ZSR (Yu, Zhang and Xu, NeurIPS 2024), text-guided attention for zero-shot
    robustness.

    The defaults are the official code's (TGA-ZSR.py): PGD with eps = step = 1/255 and 2 steps from a uniform random
    start; attention refinement weight `alpha = 0.08` and model-constraint weight `beta = 0.05` (`--Alpha`,
    `--Beta`), on the mean per-sample L2 distance of attention maps; logits scaled by the model's exp(logit_scale),
    100 for the OpenAI CLIP checkpoints; CLIP's normalisation; Resize(256) + CenterCrop(224); SGD momentum 0.9,
    lr 1e-4, no weight decay, 1000 warm-up steps then cosine, batch 128, 10 epochs on Tiny-ImageNet, no clipping;
    fp16 autocast with a GradScaler on CUDA (TGA-ZSR.py:226,313-339). `evaluate()` runs the `tga_zsr` protocol's
    PGD-100, final iterate, as its validate() does.
    """

    eval_protocol: ClassVar[str] = "tga_zsr"

    alpha: float = field(
        default=0.08,
        domain=NON_NEGATIVE,
        metadata={
            "help": "Weight of the attention refinement term mean ||A_t(x') - A_0(x)||_2 (official `--Alpha` 0.08).",
        },
    )
    beta: float = field(
        default=0.05,
        domain=NON_NEGATIVE,
        metadata={
            "help": "Weight of the model constraint term mean ||A_t(x) - A_0(x)||_2 (official `--Beta` 0.05).",
        },
    )
    logit_scale: LogitScale = field(
        default=LogitScale("100"),
        metadata={
            "help": "Scale s of the cosine logits: the official code multiplies by the model's exp(logit_scale), 100 "
            "for the OpenAI CLIP checkpoints (clamped at ln 100 after every step)."
        },
    )
    learning_rate: float = field(
        default=1e-4, metadata={"help": f"TGA-ZSR.py's default `--learning_rate 1e-4`; with {TECOA_FAMILY}."}
    )
    per_device_train_batch_size: int = field(
        default=128, metadata={"help": "TGA-ZSR.py's batch of 128 (global: divide by the process count)."}
    )

    @property
    def uses_reference(self) -> bool:
        return True  # the frozen model's attention maps A_0(x)
