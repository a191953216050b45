"""`FAREConfig`: FARE's hyper-parameters, defaulting to the official recipe."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..pixels import LogitScale, PixelValue
from .base_config import RobustCLIPConfig, cite

SOURCE = "the official train/adversarial_training_clip.py with its README command for FARE^4"


@cite({
    "train_eps": "the README command for FARE^4 (--eps 4)", "train_step_size": f"{SOURCE} (--stepsize_adv 1)",
    "train_steps": f"{SOURCE} (--iterations_adv 10)",
    "attack_random_start": "train/adversarial_training_clip.py: perturbation uniform in [-eps, eps]",
    "logit_scale": "FARE's evaluation (logit_scale=100.)",
    "image_mean": "ClipVisionModel.normalize: CLIP's mean", "image_std": "ClipVisionModel.normalize: CLIP's std",
    "prompt_template": "--template std ('This is a photo of a {}'), used only by evaluation",
    "crop_pct": "open_clip's validation transform, as the training script uses it",
    "interpolation": "open_clip's validation transform",
    "optim": SOURCE, "learning_rate": SOURCE, "weight_decay": SOURCE, "warmup_steps": SOURCE,
    "lr_scheduler_type": f"{SOURCE} (open_clip's cosine_lr)", "per_device_train_batch_size": SOURCE,
    "max_grad_norm": f"{SOURCE}: no gradient clipping",
})  # fmt: skip
@dataclass
class FAREConfig(RobustCLIPConfig):
    r"""Arguments of [`FARETrainer`]: FARE (Schlarmann et al., ICML 2024), unsupervised adversarial fine-tuning of
    the image embedding.

    The defaults are the official code's (train/adversarial_training_clip.py, train/pgd_train.py, README command for
    FARE^4): 10-step PGD at eps 4/255 (FARE^2: 2/255), step 1/255, uniform random start, sign steps with momentum
    0.9, maximising the same squared distance the loss minimises; CLIP's normalisation; Resize(224, bicubic) +
    CenterCrop(224); AdamW, lr 1e-5, weight decay 1e-4 on every visual parameter (biases and LayerNorms too), 1400
    warm-up steps then cosine, 20,000 steps at batch 128 (two ImageNet epochs) with the last partial batch dropped, no
    gradient clipping, float32. Known differences: the official start is not clipped to the
    image range before the first step (here it is), and its scheduler steps after the optimiser, so its first update
    already uses the full learning rate.
    """

    uses_labels: ClassVar[bool] = False  # unsupervised: the train set needs only an image column
    official_precision: ClassVar[str] = "no"  # float32: the training script has no autocast

    train_eps: PixelValue = field(
        default=PixelValue(4 / 255),
        metadata={"help": f"Training budget: 4/255 ({SOURCE}); FARE^2 uses 2/255."},
    )
    train_steps: int = field(default=10, metadata={"help": f"PGD steps of the training attack: 10 ({SOURCE})."})
    train_attack_momentum: float = field(
        default=0.9,
        metadata={
            "help": "pgd_train.py's momentum: v = sign(0.9 v + sign(grad)), step along v. Under L-inf this only "
            "differs from plain sign-PGD where a gradient entry is exactly 0."
        },
    )
    logit_scale: LogitScale = field(
        default=LogitScale("100"),
        metadata={"help": "Only used by evaluate(): FARE's loss has no logits; its evaluation uses s = 100."},
    )
    crop_pct: float = field(
        default=1.0, metadata={"help": "Resize(224) + CenterCrop(224), open_clip's transform as FARE uses it."}
    )
    interpolation: str = field(default="bicubic", metadata={"help": "Bicubic, as open_clip's transform."})
    optim: str = field(default="adamw_torch", metadata={"help": f"AdamW with PyTorch's betas and eps ({SOURCE})."})
    optim_args: str | None = field(default=None, metadata={"help": "No extra optimiser arguments."})
    learning_rate: float = field(default=1e-5, metadata={"help": f"1e-5 ({SOURCE})."})
    weight_decay: float = field(default=1e-4, metadata={"help": f"1e-4 ({SOURCE})."})
    weight_decay_all_parameters: bool = field(
        default=True,
        metadata={
            "help": "AdamW(params, weight_decay=1e-4) on every visual parameter, biases and LayerNorms included "
            f"({SOURCE}:194,197; transformers would exempt them)."
        },
    )
    dataloader_drop_last: bool = field(
        default=True, metadata={"help": f"Drop the last partial batch: DataLoader(drop_last=True) ({SOURCE}:147)."}
    )
    warmup_from_first_step: bool = field(
        default=False,
        metadata={
            "help": "transformers' warm-up (step / warmup_steps). FARE's open_clip cosine_lr is set after each "
            "optimiser step, so its first update uses the full learning rate: neither schedule reproduces that."
        },
    )
    warmup_steps: float = field(default=1400, metadata={"help": f"1400 linear warm-up steps ({SOURCE})."})
    max_steps: int = field(
        default=20000, metadata={"help": f"20,000 steps, two ImageNet epochs at batch 128 ({SOURCE})."}
    )
    per_device_train_batch_size: int = field(
        default=128, metadata={"help": f"Batch 128 ({SOURCE}); global: divide by the process count."}
    )

    @property
    def uses_reference(self) -> bool:
        return True  # the frozen pre-trained encoder E_0 anchors both the attack and the loss
