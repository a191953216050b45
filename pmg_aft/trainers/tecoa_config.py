"""`TeCoAConfig`: TeCoA's hyper-parameters, defaulting to the official recipe."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..pixels import LogitScale
from .base_config import TECOA_FAMILY, RobustCLIPConfig, cite, readme_attack

CODE = "finetuning.py (official TeCoA code)"
OPTIMISATION = f"{CODE}: SGD(momentum=0.9, weight_decay=0) on the visual tower, 1000 warm-up steps, cosine_lr"


@cite({
    **readme_attack(CODE),
    "logit_scale": f"{CODE}: logit_scale.exp() of the model, clamped at ln 100",
    "image_mean": f"{CODE}: CLIP's mean, after the bicubic upsample", "image_std": f"{CODE}: CLIP's std",
    "prompt_template": f"{CODE}: 'This is a photo of a {{}}'",
    "crop_pct": f"{CODE}: Resize(256) + CenterCrop(224) for ImageNet-style data",
    "interpolation": "torchvision Resize's default (bilinear)",
    "optim": OPTIMISATION, "weight_decay": OPTIMISATION, "lr_scheduler_type": OPTIMISATION,
    "warmup_steps": OPTIMISATION, "learning_rate": "main.sh of the TGA-ZSR re-run of TeCoA (--learning_rate 1e-5)",
    "per_device_train_batch_size": "the README command's --batch_size 256",
    "max_grad_norm": f"{CODE}: no gradient clipping",
})  # fmt: skip
@dataclass
class TeCoAConfig(RobustCLIPConfig):
    r"""Arguments of [`TeCoATrainer`]: TeCoA (Mao et al., ICLR 2023), text-guided contrastive adversarial training.

    The defaults follow the official code (finetuning.py) with its README command: PGD with eps = step = 1/255 and 2
    steps from a uniform random start; logits scaled by the model's exp(logit_scale), which is 100 for the OpenAI CLIP
    checkpoints; CLIP's own normalisation; the prompt `This is a photo of a {}`; Resize(256) + CenterCrop(224); SGD
    momentum 0.9, no weight decay, 1000 warm-up steps then cosine, batch 256, 10 epochs, no gradient clipping. The
    learning rate is 1e-5, as in the TGA-ZSR re-run of TeCoA (the code's own default is 1e-7).
    """

    logit_scale: LogitScale = field(
        default=LogitScale("100"),
        metadata={
            "help": "Scale s of the cosine logits: the official code uses the model's exp(logit_scale), 100 for "
            "the OpenAI CLIP checkpoints (clamped at ln 100 after every step)."
        },
    )
    learning_rate: float = field(
        default=1e-5,
        metadata={
            "help": "1e-5, the TGA-ZSR re-run of TeCoA (main.sh:16-17), whose table the other methods are compared "
            "in; TeCoA's finetuning.py defaults to 1e-7 (:58) and its README command does not override it "
            f"(`--learning_rate 1e-7` for that). With {TECOA_FAMILY}."
        },
    )
    per_device_train_batch_size: int = field(
        default=256, metadata={"help": "The README command's batch of 256 (global: divide by the process count)."}
    )
