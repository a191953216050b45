"""`PMGAFTConfig`: the method's hyper-parameters on top of `transformers.TrainingArguments`."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from .attacks import NORMS as ATTACK_NORMS
from .attacks import check_budget
from .zeroshot import DEFAULT_TEMPLATE, IMAGENET_MEAN, IMAGENET_STD

KL_DIRECTIONS = ("official", "early")
METHODS = ("pmg_aft", "tecoa", "fare", "clean", "tga_zsr")


def parse_pixel_value(value: float | int | str, name: str = "value") -> float:
    """Parse a pixel-unit quantity such as `1/255`, `"4/255"`, `"0.0039"` or `0.0039` into a float.

    Args:
        value (`float`, `int` or `str`): the value, possibly a fraction written as a string.
        name (`str`): the option's name, used in error messages.

    Returns:
        `float`: the value in [0, 1] pixel units.
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number such as 1/255, got a boolean.")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        numerator, _, denominator = value.replace(" ", "").partition("/")
        try:
            return float(numerator) / float(denominator) if denominator else float(numerator)
        except (ValueError, ZeroDivisionError):
            pass
    raise ValueError(f"{name}={value!r} is not a number; write it as a float (0.0039) or a fraction (1/255).")


class PixelValue(float):
    """A float that also parses fractions such as `1/255`; the command-line type of eps and step sizes."""

    def __new__(cls, value: float | int | str = 0.0) -> PixelValue:
        return super().__new__(cls, parse_pixel_value(value))


@dataclass
class PMGAFTConfig(TrainingArguments):
    r"""Training arguments for PMG-AFT and TeCoA adversarial fine-tuning of a `CLIPModel`.

    The defaults reproduce the method of Wang et al. (CVPR 2024): PGD with eps = step = 1/255 and 2 steps,
    alpha = beta = 256 on batch-mean KL terms (the official code's summed KL at batch 256), cosine logits without a
    logit scale, ImageNet normalisation and the prompt `This is a photo of a {}`. The optimiser and schedule of the
    paper (SGD momentum 0.9, lr 5e-5, 1000 warm-up steps then cosine) are standard `TrainingArguments` fields; see
    `examples/configs/pmg_aft_vitb32_tinyimagenet.yaml`. TeCoA is `alpha=0, beta=0, logit_scale=100`.

    Pixel quantities (`train_eps`, `train_step_size`, `eval_eps`, `eval_step_size`) are in [0, 1] pixel units and
    accept fractions such as `1/255` on the command line and in YAML files.
    """

    # Method and loss.
    method: str = field(
        default="pmg_aft",
        metadata={
            "help": "`pmg_aft`; `tecoa` (cross-entropy on adversarial images: alpha = beta = 0; the paper "
            "uses logit_scale 100); `fare` (unsupervised: ||E_t(x') - E_0(x)||^2 on image embeddings, the attack "
            "maximising the same distance; no labels, no text); `clean` (plain fine-tuning, no attack); `tga_zsr` "
            "(cross-entropy plus text-guided attention terms against the frozen model, tga_alpha / tga_beta).",
            "choices": list(METHODS),
        },
    )
    alpha: float = field(
        default=256.0,
        metadata={
            "help": "Weight of the guidance term KL(p_0(x') || p_t(x')) from the frozen pre-trained model, on "
            "batch-mean KL. The paper's setting is 256 (summed KL at batch 256). 0 disables the frozen model."
        },
    )
    beta: float = field(
        default=256.0,
        metadata={
            "help": "Weight of the consistency term KL(p_t(x) || p_t(x')) with the target's own clean output, "
            "on batch-mean KL. The paper's setting is 256. alpha = beta = 0 is TeCoA."
        },
    )
    tga_alpha: float = field(
        default=0.08, metadata={"help": "TGA-ZSR: weight of the attention refinement term (official: 0.08)."}
    )
    tga_beta: float = field(
        default=0.05, metadata={"help": "TGA-ZSR: weight of the attention-based model constraint (official: 0.05)."}
    )
    kl_direction: str = field(
        default="official",
        metadata={
            "help": "`official`: KL(p_0(x') || p_t(x')) and KL(p_t(x) || p_t(x')) (last revision of the "
            "official code). `early`: KL(p_t(x') || p_0(x')) and KL(p_t(x') || p_t(x)) (an earlier revision).",
            "choices": list(KL_DIRECTIONS),
        },
    )
    # Training attack.
    train_eps: PixelValue = field(
        default=PixelValue(1 / 255),
        metadata={
            "help": "Perturbation budget of the training attack, in [0, 1] pixel units (1/255 = one grey level)."
        },
    )
    train_step_size: PixelValue = field(
        default=PixelValue(1 / 255), metadata={"help": "PGD step size of the training attack, in pixel units."}
    )
    train_steps: int = field(default=2, metadata={"help": "PGD steps of the training attack (paper: 2)."})
    attack_norm: str = field(
        default="linf", metadata={"help": "Threat model of the attacks.", "choices": list(ATTACK_NORMS)}
    )
    attack_random_start: bool = field(
        default=True, metadata={"help": "Start PGD from a uniform random point in the eps-ball (training and eval)."}
    )
    # Zero-shot head.
    logit_scale: str = field(
        default="1",
        metadata={
            "help": "Scale s of the cosine logits in training and attacks: a number (1 for PMG-AFT, 100 for "
            "TeCoA and FARE) or `model` for the checkpoint's own exp(logit_scale)."
        },
    )
    image_mean: list[float] = field(
        default_factory=lambda: list(IMAGENET_MEAN),
        metadata={
            "help": "Per-channel normalisation mean used inside the classifier and saved with the processor "
            "(default: ImageNet's, as the official code; CLIP's own is 0.4815 0.4578 0.4082)."
        },
    )
    image_std: list[float] = field(
        default_factory=lambda: list(IMAGENET_STD),
        metadata={"help": "Per-channel normalisation std (default: ImageNet's; CLIP's own is 0.2686 0.2613 0.2758)."},
    )
    prompt_template: str = field(
        default=DEFAULT_TEMPLATE,
        metadata={"help": "Prompt for the class text embeddings; `{}` is replaced by the cleaned class name."},
    )
    # Data.
    image_column: str = field(default="image", metadata={"help": "Dataset column holding the images."})
    label_column: str = field(default="label", metadata={"help": "Dataset column holding the integer labels."})
    native_resolution: bool = field(
        default=False,
        metadata={
            "help": "Keep images at their native size (attack at e.g. 32 px for CIFAR, resized to the model "
            "inside the classifier) instead of Resize/CenterCrop to the model's size before the attack."
        },
    )
    benchmark_data_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder with local copies of benchmarks given by name, one sub-folder per benchmark "
            "(`cifar10/`, `tiny-imagenet/`, ...) in the Hub dataset's schema; default: the Hub."
        },
    )
    on_bad_image: str = field(
        default="raise",
        metadata={
            "help": "Undecodable images, checked once before training: `raise` names the dataset and index of "
            "the first, `skip` drops them and logs how many.",
            "choices": ["raise", "skip"],
        },
    )
    # Evaluation.
    eval_protocol: str = field(
        default="paper",
        metadata={
            "help": "Prompts for registered benchmarks: `paper` (the official per-dataset prompt) or "
            "`clip_benchmark` (template ensembles).",
            "choices": ["paper", "clip_benchmark"],
        },
    )
    eval_max_samples: int | None = field(
        default=None, metadata={"help": "Evaluate benchmarks given by name on their first N samples."}
    )
    eval_eps: PixelValue = field(
        default=PixelValue(1 / 255), metadata={"help": "Budget of the PGD attack used by `evaluate()`, pixel units."}
    )
    eval_step_size: PixelValue = field(
        default=PixelValue(1 / 255), metadata={"help": "Step size of the evaluation PGD attack, pixel units."}
    )
    eval_attack_steps: int = field(
        default=10,
        metadata={
            "help": "Steps of the evaluation PGD attack (the paper reports 10 and 100). Not `eval_steps`: "
            "that TrainingArguments field is the evaluation interval."
        },
    )
    eval_mixed_precision: bool = field(
        default=False,
        metadata={
            "help": "Run evaluate()'s attack and predictions under the training mixed precision (faster). Off "
            "by default: at eps = 1/255 rounding in bf16/fp16 forwards is comparable to the perturbation's "
            "effect (benchmarks/attack_precision.py), so reported accuracy is computed in float32."
        },
    )
    # TrainingArguments defaults that this trainer needs.
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Must stay False: the image column is not an argument of CLIPModel.forward."},
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False,
        metadata={"help": "Every trainable (vision) parameter is used in each step, so DDP need not search."},
    )

    def __post_init__(self) -> None:
        if self.attack_norm not in ATTACK_NORMS:
            raise ValueError(f"attack_norm={self.attack_norm!r} is not one of {ATTACK_NORMS}.")
        for name in ("train_eps", "train_step_size", "eval_eps", "eval_step_size"):
            setattr(self, name, PixelValue(check_budget(name, PixelValue(getattr(self, name)), self.attack_norm)))
        for name in ("train_steps", "eval_attack_steps"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.eval_protocol not in ("paper", "clip_benchmark"):
            raise ValueError(f"eval_protocol={self.eval_protocol!r} is not 'paper' or 'clip_benchmark'.")
        if self.on_bad_image not in ("raise", "skip"):
            raise ValueError(f"on_bad_image={self.on_bad_image!r} is not 'raise' or 'skip'.")
        if self.kl_direction not in KL_DIRECTIONS:
            raise ValueError(f"kl_direction={self.kl_direction!r} is not one of {KL_DIRECTIONS}.")
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r} is not one of {METHODS}.")
        if self.method == "fare" and not self.attack_random_start:
            raise ValueError(
                "method='fare' needs attack_random_start=True: its objective ||E_t(x+d) - E_0(x)||^2 has a zero "
                "gradient at d = 0 while the model equals the reference, so PGD without a random start never moves."
            )
        if self.method in ("tecoa", "clean", "fare", "tga_zsr"):
            self.alpha, self.beta = 0.0, 0.0  # only PMG-AFT has the two KL terms
        if self.alpha < 0 or self.beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got alpha={self.alpha}, beta={self.beta}.")
        self.logit_scale = str(self.logit_scale)
        self.resolved_logit_scale()  # validates
        for name in ("image_mean", "image_std"):
            value = [float(v) for v in getattr(self, name)]
            if len(value) != 3:
                raise ValueError(f"{name} needs 3 values (R, G, B), got {value}.")
            setattr(self, name, value)
        if any(s <= 0 for s in self.image_std):
            raise ValueError(f"image_std must be positive, got {self.image_std}.")
        if self.prompt_template.count("{}") != 1:
            raise ValueError(
                f"prompt_template={self.prompt_template!r} must contain exactly one '{{}}' for the class name."
            )
        if self.remove_unused_columns:
            raise ValueError(
                "remove_unused_columns=True would drop the image column before the collator sees it; leave it False."
            )
        if self.load_best_model_at_end and self.metric_for_best_model is None:
            # evaluate() returns no loss; Trainer's default "loss" would fail at the first evaluation.
            self.metric_for_best_model = "robust_accuracy"
            self.greater_is_better = True
        super().__post_init__()

    def resolved_logit_scale(self) -> float | None:
        """The logit scale as a float, or `None` for the model's own `exp(logit_scale)`."""
        if str(self.logit_scale).strip().lower() == "model":
            return None
        try:
            value = parse_pixel_value(self.logit_scale, "logit_scale")
        except ValueError:
            raise ValueError(
                f"logit_scale={self.logit_scale!r} is neither a number (1 for PMG-AFT, 100 for TeCoA) nor 'model'."
            ) from None
        if value <= 0:
            raise ValueError(f"logit_scale must be positive, got {value}.")
        return value
