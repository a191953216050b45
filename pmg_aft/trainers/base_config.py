"""`RobustCLIPConfig`: what every adversarial fine-tuning method shares, on top of `transformers.TrainingArguments`."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

import torch
from transformers import TrainingArguments
from transformers.trainer_utils import HubStrategy

from ..attack_settings import AttackGrid, AttackSetting
from ..constants import CLIP_MEAN, CLIP_STD, DEFAULT_CROP_PCT, DEFAULT_TEMPLATE, INTERPOLATIONS, NORMS
from ..domains import (
    ACCUMULATION,
    BATCH,
    COUNT,
    EPOCHS,
    LOGIT_SCALE,
    NON_NEGATIVE,
    PIXEL,
    POSITIVE,
    RGB,
    RGB_POSITIVE,
    SEED,
    STEPS,
    TRAINING_STEPS,
    UNIT_OPEN_LEFT,
    UNIT_OPEN_RIGHT,
    WORKERS,
    Domain,
    field,
    unset_or,
    with_domains,
)
from ..errors import InputError
from ..parsing import check_fields
from ..pixels import LogitScale, PixelValue, check_budget
from ..prompts import check_template

logger = logging.getLogger(__name__)

TRAIN_ATTACK_FIELDS = ("train_eps", "train_step_size", "train_steps", "train_attack_momentum")

# Where the defaults come from (facts read from each method's official code; no code was copied).
TECOA_FAMILY = (
    "the TeCoA code's recipe, which PMG-AFT and TGA-ZSR reuse (finetuning.py / PMG_AFT.py / TGA-ZSR.py: SGD with "
    "momentum 0.9, no weight decay, 1000 linear warm-up steps then cosine, 10 epochs, no gradient clipping)"
)
# The fields that make up a method's recipe: every method config cites a source for each of them (`cite`).
RECIPE_FIELDS = (
    "train_eps", "train_step_size", "train_steps", "attack_random_start", "logit_scale", "image_mean", "image_std",
    "prompt_template", "crop_pct", "interpolation", "optim", "learning_rate", "weight_decay", "lr_scheduler_type",
    "warmup_steps", "per_device_train_batch_size", "max_grad_norm",
)  # fmt: skip
PIXEL_FIELDS = ("train_eps", "train_step_size", "eval_eps", "eval_step_size")


def readme_attack(code: str) -> dict[str, str]:
    """The training attack of the TeCoA and PMG-AFT README commands (their code shares attack_pgd and its flags)."""
    return {
        "train_eps": "the README command's --train_eps 1 (/255); the code's default is 2",
        "train_step_size": "the README command's --train_stepsize 1 (/255)",
        "train_steps": "the README command's --train_numsteps 2 (the code's default is 5)",
        "attack_random_start": f"{code}, attack_pgd: delta uniform in [-eps, eps], final iterate",
    }


def cite(sources: dict[str, str]) -> Callable[[type], type]:
    """Class decorator for a method's config: append "Source: ..." to the help of the named fields (inherited ones
    included, without touching the parent's), so `--help` says where each default comes from."""

    def decorate(cls: type) -> type:
        for name, source in sources.items():
            inherited = cls.__dataclass_fields__[name]
            cited = copy.copy(inherited)
            text = f"{inherited.metadata.get('help', '')} Source: {source}."
            cited.metadata = MappingProxyType({**inherited.metadata, "help": text})
            cls.__dataclass_fields__[name] = cited
        return cls

    return decorate


# The domains of transformers' numeric training arguments: the fields are theirs, what they may hold is declared here.
TRAINING_ARGUMENT_DOMAINS = {
    "per_device_train_batch_size": BATCH, "per_device_eval_batch_size": BATCH,
    "gradient_accumulation_steps": ACCUMULATION, "eval_accumulation_steps": ACCUMULATION, "num_train_epochs": EPOCHS,
    "max_steps": unset_or(TRAINING_STEPS, "num_train_epochs decides"), "learning_rate": POSITIVE,
    "warmup_steps": Domain(low=0, high=10**9),  # below 1: a share of the steps
    "weight_decay": NON_NEGATIVE, "adam_beta1": UNIT_OPEN_RIGHT, "adam_beta2": UNIT_OPEN_RIGHT,
    "adam_epsilon": POSITIVE,
    "max_grad_norm": NON_NEGATIVE,  # 0: no clipping
    "label_smoothing_factor": UNIT_OPEN_RIGHT, "neftune_noise_alpha": POSITIVE, "torch_empty_cache_steps": COUNT,
    "logging_steps": POSITIVE, "eval_steps": POSITIVE, "save_steps": POSITIVE,  # below 1: a share of the steps
    "eval_delay": NON_NEGATIVE, "save_total_limit": COUNT, "seed": SEED, "data_seed": SEED,
    "dataloader_num_workers": WORKERS, "dataloader_prefetch_factor": Domain(low=1, high=1024, whole=True),
    "ddp_bucket_cap_mb": POSITIVE,
    "ddp_timeout": COUNT, "local_rank": Domain(low=-1, whole=True),
}  # fmt: skip


# transformers' options that have no effect on these trainers, or break them: set to anything but their default,
# they are refused, rather than ignored or left to fail mid-run.
NOT_APPLICABLE = {
    "label_smoothing_factor": (0.0, "the methods' losses are their own (compute_loss), not Trainer's label smoother"),
    "neftune_noise_alpha": (None, "NEFTune perturbs a language model's input embeddings; CLIP training has none"),
    "use_liger_kernel": (False, "Liger kernels are for language models"),
    "train_sampling_strategy": ("random", "batches are drawn at random (group_by_length needs text lengths)"),
    "optim_target_modules": (None, "GaLore-style optimisers target a language model's modules"),
}


@with_domains(TRAINING_ARGUMENT_DOMAINS)
@dataclass
class RobustCLIPConfig(TrainingArguments):
    r"""Arguments shared by every robust fine-tuning method of a `CLIPModel`: the training and evaluation attacks,
    the zero-shot head and the data columns, on top of `transformers.TrainingArguments`.

    Use a method's own config (`pmg_aft.TRAINERS[name].config_class`, e.g. [`PMGAFTConfig`]): each defaults to that
    method's official recipe. Every field is typed once, in `__post_init__`; pixel quantities (`train_eps`,
    `train_step_size`, `eval_eps`, `eval_step_size`) are in [0, 1] pixel units and accept fractions such as `1/255`
    on the command line and in YAML files.
    """

    # What the method needs, in one place (the trainer, the job and the card read these): labels and class texts (FARE
    # needs neither), a training attack (the clean baseline runs none: its train_* fields go unchecked and stay off
    # its card) and, per run, a frozen reference model ([`uses_reference`]).
    uses_labels: ClassVar[bool] = True
    uses_training_attack: ClassVar[bool] = True
    # The evaluation protocol whose PGD evaluate() runs (final iterate, its steps), so that best-checkpoint selection
    # sees what the official code's selection saw; and the precision the official code trains in on CUDA.
    eval_protocol: ClassVar[str] = "pmg_aft"
    official_precision: ClassVar[str] = "fp16"

    # Training attack.
    train_eps: PixelValue = field(
        default=PixelValue(1 / 255),
        domain=PIXEL,
        metadata={
            "help": "Perturbation budget of the training attack, in [0, 1] pixel units (1/255 = one grey level).",
        },
    )
    train_step_size: PixelValue = field(
        default=PixelValue(1 / 255),
        domain=PIXEL,
        metadata={"help": "PGD step size of the training attack, in pixel units."},
    )
    train_steps: int = field(default=2, domain=STEPS, metadata={"help": "PGD steps of the training attack."})
    train_attack_momentum: float = field(
        default=0.0,
        domain=UNIT_OPEN_RIGHT,
        metadata={
            "help": "Momentum of the training attack's step direction (FARE's 0.9; 0 is plain sign-PGD). The "
            "normalised gradient is added to a decayed velocity and the step follows the normalised velocity.",
        },
    )
    attack_norm: str = field(default="linf", metadata={"help": "Threat model of the attacks.", "choices": list(NORMS)})
    attack_random_start: bool = field(
        default=True, metadata={"help": "Start PGD from a uniform random point in the eps-ball (training and eval)."}
    )
    # Zero-shot head.
    logit_scale: LogitScale = field(
        default=LogitScale("100"),
        domain=LOGIT_SCALE,
        metadata={
            "help": "Scale s of the cosine logits in training and attacks: a number (1 for PMG-AFT, 100 for "
            "TeCoA, TGA-ZSR and FARE's evaluation) or `model` for the checkpoint's own exp(logit_scale).",
        },
    )
    image_mean: list[float] = field(
        default_factory=lambda: list(CLIP_MEAN),
        domain=RGB,
        metadata={
            "help": "Per-channel normalisation mean used inside the classifier and saved with the processor "
            "(CLIP's own: 0.4815 0.4578 0.4082; ImageNet's: 0.485 0.456 0.406).",
        },
    )
    image_std: list[float] = field(
        default_factory=lambda: list(CLIP_STD),
        domain=RGB_POSITIVE,
        metadata={
            "help": "Per-channel normalisation std (CLIP's own: 0.2686 0.2613 0.2758; ImageNet's: 0.229 ...).",
        },
    )
    prompt_template: str = field(
        default=DEFAULT_TEMPLATE,
        metadata={"help": "Prompt for the class text embeddings; `{}` is replaced by the cleaned class name."},
    )
    # Data.
    image_column: str = field(default="image", concern="data", metadata={"help": "Dataset column holding the images."})
    label_column: str = field(
        default="label", concern="data", metadata={"help": "Dataset column holding the integer labels."}
    )
    native_resolution: bool = field(
        default=False,
        metadata={
            "help": "Keep images at their native size (attack at e.g. 32 px for CIFAR, resized to the model "
            "inside the classifier) instead of Resize/CenterCrop to the model's size before the attack."
        },
    )
    crop_pct: float = field(
        default=DEFAULT_CROP_PCT,
        domain=UNIT_OPEN_LEFT,
        metadata={
            "help": "Resize the shorter side to image_size / crop_pct, then centre-crop image_size: 224/256 is "
            "Resize(256) + CenterCrop(224) (TeCoA, PMG-AFT, TGA-ZSR), 1.0 is Resize(224) + CenterCrop(224) (FARE).",
        },
    )
    interpolation: str = field(
        default="bilinear",
        metadata={
            "help": "Resize filter before the crop: bilinear (torchvision's default, the TeCoA family) or bicubic "
            "(FARE, open_clip's transform).",
            "choices": list(INTERPOLATIONS),
        },
    )
    preprocess_on_device: bool = field(
        default=False,
        concern="data",
        metadata={
            "help": "Decode every training image once into a uint8 array in memory and resize/crop batches on the "
            "accelerator inside the step, instead of decoding, resizing and converting each image on the host at "
            "every epoch: for datasets of one image size (Tiny-ImageNet: 1.2 GB for its 100,000 64 px images), "
            "within 1/255 of the host path's pixels, bilinear only (benchmarks/train_step.py measures both paths)."
        },
    )
    decode_on_device: bool = field(
        default=False,
        concern="data",
        metadata={
            "help": "Send each training image to the accelerator as its encoded JPEG bytes and decode, resize and "
            "crop the batch there (torchvision.io.decode_jpeg on CUDA), so the host only reads bytes: the fast path "
            "for ImageNet-scale streaming data. Needs torchvision; images that are not JPEG are decoded on the host."
        },
    )
    shuffle_buffer_size: int = field(
        default=10_000,
        domain=COUNT,
        concern="data",
        metadata={
            "help": "Streaming training data: rows are shuffled within consecutive windows of this many (and the "
            "shards are read in a new order each pass); 1 keeps the stream's order. A resumed run re-reads at most "
            "one window.",
        },
    )
    # Parameter-efficient fine-tuning.
    use_peft: bool = field(
        default=False,
        concern="peft",
        metadata={
            "help": "Train LoRA adapters (the peft library) on the vision tower's attention and MLP projections "
            "instead of every vision weight; the frozen reference is the same model with its adapters off (no "
            "second copy). Saved as a plain merged CLIPModel, with the adapter alone in `adapter/`."
        },
    )
    lora_r: int = field(default=16, domain=COUNT, concern="peft", metadata={"help": "LoRA rank (use_peft)."})
    lora_alpha: int = field(
        default=32,
        domain=COUNT,
        concern="peft",
        metadata={"help": "LoRA scale numerator: updates are scaled alpha / r."},
    )
    lora_dropout: float = field(
        default=0.0, domain=UNIT_OPEN_RIGHT, concern="peft", metadata={"help": "Dropout on the LoRA branch's input."}
    )
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
        concern="peft",
        metadata={"help": "Which projections of each vision encoder layer get an adapter (attention and MLP)."},
    )
    # Evaluation during training.
    eval_eps: PixelValue = field(
        default=PixelValue(1 / 255),
        domain=PIXEL,
        metadata={"help": "Budget of the PGD attack used by `evaluate()`, pixel units."},
    )
    eval_step_size: PixelValue = field(
        default=PixelValue(1 / 255),
        domain=PIXEL,
        metadata={"help": "Step size of the evaluation PGD attack, pixel units."},
    )
    eval_attack_steps: int | None = field(
        default=None,
        domain=STEPS,
        metadata={
            "help": "Steps of the evaluation PGD attack; default: the method's protocol's (pmg_aft 10, tga_zsr 100), "
            "its final iterate counting, as the official codes' in-training validation. Not `eval_steps`: that "
            "TrainingArguments field is the evaluation interval.",
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
    # TrainingArguments defaults of the TeCoA-family recipe; methods override what differs.
    optim: str = field(default="sgd", metadata={"help": f"Optimiser; default: {TECOA_FAMILY}."})
    optim_args: str | None = field(default="momentum=0.9", metadata={"help": "Optimiser arguments (SGD momentum)."})
    weight_decay: float = field(default=0.0, metadata={"help": "Weight decay (none in the TeCoA-family code)."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Cosine decay to 0 after the warm-up."})
    warmup_steps: float = field(default=1000, metadata={"help": "Linear warm-up steps (a float < 1: a fraction)."})
    warmup_from_first_step: bool = field(
        default=True,
        metadata={
            "help": "Warm up as (step + 1) / warmup_steps, the TeCoA-family cosine_lr (utils.py: the first update "
            "uses lr / warmup_steps), instead of transformers' step / warmup_steps (the first update at lr 0). The "
            "decay after the warm-up is the same cosine. Applies to lr_scheduler_type cosine."
        },
    )
    weight_decay_all_parameters: bool = field(
        default=False,
        metadata={
            "help": "Apply weight_decay to every trained parameter, as torch.optim's AdamW(params, weight_decay=...) "
            "does (FARE), instead of transformers' rule that exempts biases and LayerNorm weights."
        },
    )
    num_train_epochs: float = field(default=10.0, metadata={"help": "Training epochs."})
    max_grad_norm: float = field(
        default=0.0,
        metadata={"help": "Gradient clipping norm; 0 disables it. None of the official codes clips gradients."},
    )
    # TrainingArguments defaults that these trainers need.
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Must stay False: the image column is not an argument of CLIPModel.forward."},
    )
    logging_nan_inf_filter: bool = field(
        default=False,
        metadata={
            "help": "Trainer's filter of non-finite losses out of the logged mean: it waits for the device every "
            "step, so it is off; a non-finite loss then shows in the logs."
        },
    )
    fp16: bool | None = field(
        default=None,
        metadata={
            "help": "fp16 autocast with loss scaling. Default: the method's official precision where CUDA is present "
            "(TeCoA, PMG-AFT and TGA-ZSR train under torch.cuda.amp.autocast with a GradScaler: TeCoA "
            "finetuning.py:482,814; PMG-AFT PMG_AFT.py:404,711-743; TGA-ZSR TGA-ZSR.py:226,313-339); else float32."
        },
    )
    bf16: bool | None = field(default=None, metadata={"help": "bf16 autocast (then fp16 stays off)."})
    dataloader_drop_last: bool = field(
        default=False,
        metadata={"help": "Drop the last partial batch (on by default under torch_compile: static shapes)."},
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False,
        metadata={"help": "Every trainable (vision) parameter is used in each step, so DDP need not search."},
    )

    def __post_init__(self) -> None:
        check_fields(self)  # values from a config file, from Python or from flags, typed and checked once
        if self.eval_attack_steps is None:
            self.eval_attack_steps = self.protocol_eval_steps()
        self.resolve_precision(torch.cuda.is_available())
        self._check_attacks()
        self._check_head_and_data()
        self._check_trainer_options()
        super().__post_init__()
        if self.torch_compile and not self.dataloader_drop_last:
            # A last partial batch would recompile every compiled graph for its shape, every epoch.
            logger.info("torch_compile: dataloader_drop_last set to True, so every batch has one static shape.")
            self.dataloader_drop_last = True

    @property
    def uses_reference(self) -> bool:
        """Whether the method needs the frozen reference model with these arguments."""
        return False

    @classmethod
    def protocol_eval_steps(cls) -> int:
        """The PGD steps of the method's evaluation protocol (`eval_protocol`)."""
        from ..evaluation.protocols import get_protocol  # evaluation imports the data stack; configs stay light

        return get_protocol(cls.eval_protocol).attack.steps[0]

    def resolve_precision(self, cuda: bool) -> None:
        """`fp16`/`bf16` left unset (`None`) become the official code's precision: fp16 autocast with a GradScaler
        (TeCoA, PMG-AFT, TGA-ZSR) where CUDA is present, float32 without it (said in the log)."""
        if self.bf16 is None:
            self.bf16 = False
        if self.fp16 is not None:
            return
        self.fp16 = self.official_precision == "fp16" and cuda and not self.bf16
        if self.official_precision == "fp16" and not cuda:
            logger.info("No CUDA: training in float32 (the official code trains under CUDA fp16 autocast).")
        elif self.fp16:
            logger.info("fp16 autocast with loss scaling, as the official code trains (set fp16: false for float32).")

    def _check_attacks(self) -> None:
        # What no single field says: an L-inf budget above 1 (named by its field), a step of 0 with steps.
        for name in PIXEL_FIELDS if self.uses_training_attack else PIXEL_FIELDS[2:]:
            check_budget(name, getattr(self, name), self.attack_norm, stacklevel=5)
        for prefix, steps in (("train", "train_steps"), ("eval", "eval_attack_steps")):
            if (prefix == "eval" or self.uses_training_attack) and getattr(self, f"{prefix}_step_size") == 0:
                raise InputError(
                    f"{prefix}_step_size=0 with {steps}={getattr(self, steps)}: the {prefix} attack would never move "
                    f"(its accuracy would be clean accuracy under an attack's name); give a step size, e.g. 1/255."
                )
        if self.uses_training_attack:
            self.train_attack_setting()
        self.eval_attack_grid()

    def _check_head_and_data(self) -> None:
        check_template(self.prompt_template)
        if self.preprocess_on_device and self.decode_on_device:
            raise InputError(
                "preprocess_on_device (decode every image once, into memory) and decode_on_device (decode JPEG bytes "
                "on the accelerator at every step) are two data paths: pick one."
            )
        if self.preprocess_on_device and self.interpolation != "bilinear" and not self.native_resolution:
            raise InputError(
                f"preprocess_on_device resizes bilinearly (within 1/255 of PIL); interpolation={self.interpolation!r} "
                "needs the host path: set preprocess_on_device false."
            )

    def _check_trainer_options(self) -> None:
        if self.output_dir is None:  # transformers would write into ./trainer_output without a word
            raise InputError("output_dir is not set: name the folder for the checkpoints and the model.")
        scheduler = str(getattr(self.lr_scheduler_type, "value", self.lr_scheduler_type))
        if self.lr_scheduler_kwargs and self.warmup_from_first_step and scheduler == "cosine":
            raise InputError(
                f"lr_scheduler_kwargs={self.lr_scheduler_kwargs!r} would be ignored: the TeCoA-family cosine "
                "(warmup_from_first_step) takes none; set warmup_from_first_step false for transformers' cosine."
            )
        for name, (default, why) in NOT_APPLICABLE.items():
            if getattr(self, name) != default:
                raise InputError(f"{name}={getattr(self, name)!r}: {why}; leave it at {default!r}.")
        if self.hub_token is not None:
            raise InputError(
                "hub_token: the Hub token is read from the environment only (HF_TOKEN, or `hf auth login`): given as "
                "an argument it would sit in shell histories, process lists and saved training arguments. Remove it."
            )
        if self.push_to_hub and self.hub_strategy in (HubStrategy.CHECKPOINT, HubStrategy.ALL_CHECKPOINTS):
            raise InputError(
                f"hub_strategy={self.hub_strategy!r} would upload optimizer and scheduler states, which are pickle "
                "files; use hub_strategy='every_save' or 'end' (weights, processor and card, as safetensors/JSON)."
            )
        if self.remove_unused_columns:
            raise InputError(
                "remove_unused_columns=True would drop the image column before the collator sees it; leave it False."
            )
        if self.load_best_model_at_end and self.metric_for_best_model is None:
            # evaluate() returns no loss; Trainer's default "loss" would fail at the first evaluation.
            self.metric_for_best_model = "robust_accuracy"
            self.greater_is_better = True

    @classmethod
    def unused_fields(cls) -> tuple[str, ...]:
        """The fields this method does not use (left out of its card's recipe): the training attack's, without one."""
        return () if cls.uses_training_attack else TRAIN_ATTACK_FIELDS

    def eval_set_defaults(self) -> dict:
        """How a plain eval dataset is read and prompted ([`EvalSet.from_dataset`] keyword arguments)."""
        return dict(templates=[self.prompt_template], image_column=self.image_column, label_column=self.label_column,
                    native_resolution=self.native_resolution, crop_pct=self.crop_pct,
                    interpolation=self.interpolation)  # fmt: skip

    def train_attack_setting(self) -> AttackSetting:
        """The training attack: PGD with the `train_*` budget, returning the final iterate (as the papers)."""
        return AttackSetting(attack="pgd", eps=self.train_eps, steps=self.train_steps, step_size=self.train_step_size,
                             norm=self.attack_norm, random_start=self.attack_random_start, first_success=False,
                             momentum=self.train_attack_momentum)  # fmt: skip

    def eval_attack_grid(self) -> AttackGrid:
        """The attacks of `evaluate()`: PGD with the `eval_*` budget, the final iterate counting (as the official
        codes' validation)."""
        return AttackGrid(attacks=("pgd",), eps=(self.eval_eps,), steps=(self.eval_attack_steps,),
                          step_size=self.eval_step_size, norm=self.attack_norm, random_start=self.attack_random_start,
                          first_success=False)  # fmt: skip
