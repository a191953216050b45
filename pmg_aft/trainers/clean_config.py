"""`CleanFinetuneConfig`: plain zero-shot fine-tuning, the non-robust reference point."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .base_config import TECOA_FAMILY, RobustCLIPConfig, cite

NONE = "no paper recipe exists for the baseline"


@cite({
    "logit_scale": f"CLIP's own scale (exp(logit_scale) = 100 for OpenAI CLIP); {NONE}",
    "image_mean": f"CLIP's own; {NONE}", "image_std": f"CLIP's own; {NONE}",
    "prompt_template": "PMG-AFT's prompt", "attack_random_start": "PMG-AFT's (here: the evaluation attack's start)",
    "crop_pct": "PMG-AFT's preprocessing", "interpolation": "PMG-AFT's",
    "optim": "PMG-AFT's optimiser (PMG_AFT.py)", "learning_rate": "PMG-AFT's (PMG_AFT.py)",
    "weight_decay": "PMG-AFT's (PMG_AFT.py)", "lr_scheduler_type": "PMG-AFT's (PMG_AFT.py)",
    "warmup_steps": "PMG-AFT's (PMG_AFT.py)", "per_device_train_batch_size": "PMG-AFT's (PMG_AFT.py)",
    "max_grad_norm": "PMG-AFT's: no clipping",
})  # fmt: skip
@dataclass
class CleanFinetuneConfig(RobustCLIPConfig):
    r"""Arguments of [`CleanFinetuneTrainer`]: cross-entropy of the zero-shot logits on clean images, no attack.

    There is no paper recipe: the defaults are PMG-AFT's optimisation (SGD momentum 0.9, lr 5e-5, 1000 warm-up steps
    then cosine, batch 256, 10 epochs, no clipping) with CLIP's own head (its normalisation, logit scale 100), so the
    baseline differs from the robust methods only in the missing attack. The `train_*` attack fields are unused.
    """

    uses_training_attack: ClassVar[bool] = False

    learning_rate: float = field(default=5e-5, metadata={"help": f"PMG-AFT's 5e-5, with {TECOA_FAMILY}."})
    per_device_train_batch_size: int = field(
        default=256, metadata={"help": "PMG-AFT's batch of 256 (global: divide by the process count)."}
    )
