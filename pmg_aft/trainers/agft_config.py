"""`AGFTConfig`: AGFT's hyper-parameters, defaulting to the official recipe (its README command)."""

from __future__ import annotations

from dataclasses import dataclass

from ..domains import LOGIT_SCALE, POSITIVE, field
from ..pixels import LogitScale
from .base_config import RobustCLIPConfig, cite

CODE = "the official code (YuboCui/AGFT @ 0031a8f)"
README = "its README's training command (README.md:39)"


@cite({
    "train_eps": "main.py:71 --train_eps 1/255", "train_step_size": "main.py:72 --train_alpha 1/255",
    "train_steps": "main.py:73 --train_steps 2",
    "attack_random_start": "attacks/pgd.py:59-61: uniform in [-eps, eps], clipped, final iterate",
    "logit_scale": "clip_model.py:208-209,226-227: validation uses the model's exp(logit_scale), 100",
    "image_mean": "clip_model.py:19-21: CLIP's preprocess keeps Resize and Normalize, inside the model",
    "image_std": "clip_model.py:19-21", "prompt_template": "clip_dataset.py:337 (ImageNet)",
    "crop_pct": "utils.py:10-11 Resize(224) + CenterCrop(224)",
    "interpolation": "utils.py:10 torchvision Resize's default, bilinear",
    "optim": "main.py:110,112 SGD with momentum 0.9", "weight_decay": "main.py:114",
    "learning_rate": f"{README}: --lr=4e-4 (main.py:111's default is 1e-5)",
    "lr_scheduler_type": "train.py:187-189 timm CosineLRScheduler over every iteration",
    "warmup_steps": "main.py:115 --warmup_t 1000 (timm's warm-up from lr 0)",
    "per_device_train_batch_size": f"main.py:37 --batch_size 128 per process; {README} runs 2 processes",
    "max_grad_norm": "main.py:107 --clip_grad off",
})  # fmt: skip
@dataclass
class AGFTConfig(RobustCLIPConfig):
    r"""Arguments of [`AGFTTrainer`]: AGFT (Cui, Guan, Xiong and Zhang, CVPR 2026), alignment-guided fine-tuning
    with the frozen model's calibrated soft labels.

    The defaults are the README's training command (`--method_args '{"AGFT": {"logit_scale": 180, "scale_ratio":
    0.4}}' --lr=4e-4`, 2 processes) over the code's defaults: the student's logits `s_s * cos(V_t(x'), T)` with
    `s_s = 180`, the teacher's soft labels `softmax(s_t * cos(V_0(x), T))` with `s_t = 0.4 * 180 = 72` from the
    frozen vision tower on the clean image; PGD with eps = step = 1/255 and 2 steps from a uniform random start,
    maximising the same soft-label cross-entropy; the whole vision tower trained; SGD momentum 0.9, lr 4e-4, no
    weight decay, a cosine schedule with 1000 warm-up steps from 0, batch 128 per process (256 over the README's 2
    GPUs), 10 epochs of ImageNet, Resize(224) + CenterCrop(224), CLIP's normalisation, fp16 autocast with a
    GradScaler (`--enable_amp`). `evaluate()` runs PGD-20 at 1/255 (main.py:98-100) at the model's scale, 100.

    Known difference: timm's CosineLRScheduler (warmup_prefix off) runs its cosine over every step from 0 and the
    warm-up overrides the first 1000, so its decay starts at `0.5 * (1 + cos(pi * 1000 / T))` of the peak; here the
    cosine starts after the warm-up (transformers), 2% of the schedule apart for ImageNet's 50,050 steps.
    """

    train_logit_scale: float = field(
        default=180.0,
        domain=LOGIT_SCALE,
        metadata={
            "help": f"The student's scale s_s of cos(V_t(x'), T) in the loss and the attack: 180 ({README}); "
            "the code's default is 100 (main.py:24).",
        },
    )
    scale_ratio: float = field(
        default=0.4,
        domain=POSITIVE,
        metadata={
            "help": "The teacher's scale as a fraction of the student's, s_t = scale_ratio * s_s: 0.4 "
            f"({README}); the code's default is 1 (main.py:24).",
        },
    )
    logit_scale: LogitScale = field(
        default=LogitScale("100"),
        metadata={
            "help": "The zero-shot head's scale outside training: evaluate() uses the model's exp(logit_scale), 100 "
            "(clip_model.py:226-227). Training and its attack use train_logit_scale."
        },
    )
    prompt_template: str = field(default="This is a photo of a {}.", metadata={"help": "With the full stop."})
    crop_pct: float = field(default=1.0, metadata={"help": "Resize(224) + CenterCrop(224)."})
    learning_rate: float = field(default=4e-4, metadata={"help": "4e-4."})
    warmup_from_first_step: bool = field(
        default=False,
        metadata={
            "help": "timm's warm-up from 0: train.py:24 sets the iteration's lr before its update, so the first "
            "update runs at lr 0, as transformers' step / warmup_steps."
        },
    )
    per_device_train_batch_size: int = field(default=128, metadata={"help": "128 per process."})
    eval_attack_steps: int | None = field(
        default=20, metadata={"help": "PGD steps of evaluate(): the official validation's 20 (main.py:100)."}
    )

    @property
    def uses_reference(self) -> bool:
        return True  # the frozen vision tower V_0 gives the soft labels

    @property
    def teacher_logit_scale(self) -> float:
        return self.scale_ratio * self.train_logit_scale
