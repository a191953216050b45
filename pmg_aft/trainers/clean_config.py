"""`CleanFinetuneConfig`: plain zero-shot fine-tuning, the non-robust reference point (TGA-ZSR's FT-Clean)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .base_config import TECOA_FAMILY, RobustCLIPConfig, cite, logger

FT_CLEAN = "TGA-ZSR's FT-Clean (FT.py at 5f2b31c)"
CLEAN_LOSSES = ("batch_clip", "zero_shot_ce")


@cite({
    "logit_scale": f"the model's own exp(logit_scale), 100 for OpenAI CLIP ({FT_CLEAN})",
    "image_mean": "CLIP's own (TGA-ZSR's clip_img_preprocessing)", "image_std": "CLIP's own",
    "prompt_template": f"'This is a photo of a {{}}' ({FT_CLEAN}:189,218)",
    "attack_random_start": "PMG-AFT's (here: the evaluation attack's start)",
    "crop_pct": "PMG-AFT's preprocessing", "interpolation": "PMG-AFT's",
    "optim": f"SGD momentum 0.9 over the visual parameters ({FT_CLEAN}:42,155-159)",
    "learning_rate": f"1e-4 ({FT_CLEAN}:39)", "weight_decay": f"0 ({FT_CLEAN}:40)",
    "lr_scheduler_type": f"cosine_lr ({FT_CLEAN}:223)", "warmup_steps": f"1000 ({FT_CLEAN}:41)",
    "per_device_train_batch_size": f"128 ({FT_CLEAN}:34)", "max_grad_norm": "no clipping",
    "loss": f"{FT_CLEAN}:321-327",
})  # fmt: skip
@dataclass
class CleanFinetuneConfig(RobustCLIPConfig):
    r"""Arguments of [`CleanFinetuneTrainer`]: zero-shot fine-tuning of the image tower on clean images, no attack.

    The defaults are TGA-ZSR's FT-Clean row (FT.py at 5f2b31c, run with its defaults: the main.sh line
    `--VPbaseline True` fails argparse's int()): the symmetric CLIP loss over the batch's own classes
    ([`batch_clip_loss`]), SGD momentum 0.9 over the visual parameters, lr 1e-4, no weight decay, 1000 warm-up
    steps then cosine, batch 128, 10 epochs, fp16 autocast with a GradScaler on CUDA, the model's logit scale (100)
    and CLIP's normalisation. `loss="zero_shot_ce"` is the cross-entropy over every class instead. The `train_*`
    attack fields are unused.

    Under several processes the batch's classes are the global batch's (each process's rows are gathered), so the
    loss and its gradient do not depend on the process count; the official code ran it under DataParallel, over the
    whole batch.
    """

    uses_training_attack: ClassVar[bool] = False

    loss: str = field(
        default="batch_clip",
        metadata={
            "help": "batch_clip: the symmetric CLIP loss over the batch's own classes (TGA-ZSR's FT-Clean, FT.py:321-"
            "327); zero_shot_ce: cross-entropy of the zero-shot logits over every class.",
            "choices": list(CLEAN_LOSSES),
        },
    )
    learning_rate: float = field(default=1e-4, metadata={"help": f"1e-4 ({FT_CLEAN}:39), with {TECOA_FAMILY}."})
    per_device_train_batch_size: int = field(
        default=128, metadata={"help": f"Batch of 128 ({FT_CLEAN}:34; global: divide by the process count)."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss == "batch_clip" and self.gradient_accumulation_steps > 1:
            # The loss's negatives are the batch's other rows, so accumulation changes the loss, not only its memory.
            logger.warning(
                "loss='batch_clip' with gradient_accumulation_steps=%d: each micro-batch of %d is its own set of "
                "negatives, so this is not the loss of one batch of %d. Raise per_device_train_batch_size instead, or "
                "use loss='zero_shot_ce', which accumulates exactly.",
                self.gradient_accumulation_steps, self.per_device_train_batch_size,
                self.per_device_train_batch_size * self.gradient_accumulation_steps,
            )  # fmt: skip
