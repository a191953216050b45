"""`PMGAFTConfig`: PMG-AFT's hyper-parameters, defaulting to the official recipe."""

from __future__ import annotations

from dataclasses import dataclass

from ..constants import IMAGENET_MEAN, IMAGENET_STD
from ..domains import NON_NEGATIVE, field
from ..pixels import LogitScale
from .base_config import TECOA_FAMILY, RobustCLIPConfig, cite, readme_attack

KL_DIRECTIONS = ("official", "early")
CODE = "PMG_AFT.py (official code, commit a53fdd8)"
OPTIMISATION = f"{CODE}: SGD(momentum=0.9, weight_decay=0) on the visual tower, 1000 warm-up steps, cosine_lr"


@cite({
    **readme_attack(CODE),
    "logit_scale": f"{CODE}, multiGPU_CLIP: the logit-scaled text embedding is re-normalised, so s = 1",
    "image_mean": f"{CODE}: ImageNet_MEAN, inside clip_img_preprocessing",
    "image_std": f"{CODE}: ImageNet_STD",
    "prompt_template": f"{CODE}: 'This is a photo of a {{}}'",
    "crop_pct": f"{CODE}: preprocess224 = Resize(256) + CenterCrop(224)",
    "interpolation": "torchvision Resize's default (bilinear), as preprocess224 uses it",
    "optim": OPTIMISATION, "weight_decay": OPTIMISATION, "lr_scheduler_type": OPTIMISATION,
    "warmup_steps": OPTIMISATION, "learning_rate": f"{CODE}: --learning_rate 5e-5",
    "per_device_train_batch_size": f"{CODE}: --batch_size 256", "max_grad_norm": f"{CODE}: no gradient clipping",
})  # fmt: skip
@dataclass
class PMGAFTConfig(RobustCLIPConfig):
    r"""Arguments of [`PMGAFTTrainer`]: PMG-AFT (Wang et al., CVPR 2024) adversarial fine-tuning of a `CLIPModel`.

    The defaults are the official code's (PMG_AFT.py and its README command): PGD with eps = step = 1/255 and 2
    steps from a uniform random start, `alpha = beta = 256` on batch-mean KL terms (the code's summed KL at batch 256
    with weight 1), plain cosine logits (s = 1), ImageNet normalisation, the prompt `This is a photo of a {}`,
    Resize(256) + CenterCrop(224); SGD momentum 0.9, lr 5e-5, no weight decay, 1000 warm-up steps then cosine,
    batch 256, 10 epochs, no gradient clipping. The paper trains on Tiny-ImageNet
    (`examples/configs/pmg_aft_vitb32_tinyimagenet.yaml`).
    """

    alpha: float = field(
        default=256.0,
        domain=NON_NEGATIVE,
        metadata={
            "help": "Weight of the guidance term KL(p_0(x') || p_t(x')) from the frozen pre-trained model, on "
            "batch-mean KL. 256 = the official code's summed KL (KLDivLoss(reduction='sum'), weight 1) at its batch "
            "of 256. 0 disables the frozen model.",
        },
    )
    beta: float = field(
        default=256.0,
        domain=NON_NEGATIVE,
        metadata={
            "help": "Weight of the consistency term KL(p_t(x) || p_t(x')) with the target's own clean output, "
            "on batch-mean KL; 256 as for alpha. alpha = beta = 0 is TeCoA's loss.",
        },
    )
    kl_direction: str = field(
        default="official",
        metadata={
            "help": "`official`: KL(p_0(x') || p_t(x')) and KL(p_t(x) || p_t(x')) (last revision of the "
            "official code). `early`: KL(p_t(x') || p_0(x')) and KL(p_t(x') || p_t(x)) (an earlier revision).",
            "choices": list(KL_DIRECTIONS),
        },
    )
    logit_scale: LogitScale = field(
        default=LogitScale("1"),
        metadata={
            "help": "Scale s of the cosine logits: 1, as the official code (it re-normalises the scaled text "
            "embeddings, which removes exp(logit_scale)) in training, the training attack and evaluation."
        },
    )
    image_mean: list[float] = field(
        default_factory=lambda: list(IMAGENET_MEAN),
        metadata={"help": "Normalisation mean: ImageNet's, as the official code (ImageNet_MEAN in PMG_AFT.py)."},
    )
    image_std: list[float] = field(
        default_factory=lambda: list(IMAGENET_STD),
        metadata={"help": "Normalisation std: ImageNet's, as the official code (ImageNet_STD)."},
    )
    learning_rate: float = field(
        default=5e-5, metadata={"help": f"PMG_AFT.py's default `--learning_rate 5e-5`; with {TECOA_FAMILY}."}
    )
    per_device_train_batch_size: int = field(
        default=256,
        metadata={
            "help": "PMG_AFT.py's batch of 256 is the global batch: on N processes use 256/N (or gradient "
            "accumulation); the update is the same."
        },
    )

    @property
    def uses_reference(self) -> bool:
        return self.alpha > 0  # the guidance term KL(p_0(x') || p_t(x'))
