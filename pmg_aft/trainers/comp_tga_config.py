"""`CompTGAConfig`: Comp-TGA's hyper-parameters, defaulting to the official recipe."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InputError
from ..parsing import check_fields
from ..prompts import check_template
from .base_config import cite
from .tga_zsr_config import TGAZSRConfig

CODE = "Comp-TGA.py (official code, zhyblue424/TGA-ZSR @ 663fe57)"


@cite({
    "train_eps": f"{CODE}:52 --train_eps 1 (/255)", "train_step_size": f"{CODE}:54 --train_stepsize 1 (/255)",
    "train_steps": f"{CODE}:53 --train_numsteps 2", "learning_rate": f"{CODE}:46 --learning_rate 1e-4",
    "weight_decay": f"{CODE}:47 --weight_decay 0", "warmup_steps": f"{CODE}:48 --warmup 1000",
    "per_device_train_batch_size": f"{CODE}:39 --batch_size 128", "prompt_template": f"{CODE}:208",
})  # fmt: skip
@dataclass
class CompTGAConfig(TGAZSRConfig):
    r"""Arguments of [`CompTGATrainer`]: Comp-TGA (Yu, Zhang and Xu, TPAMI 2026), complementary text-guided
    attention, TGA-ZSR's journal extension.

    TGA-ZSR's recipe with a complementary attention map: `A = M_pos * (1 - M_neg)`, `M_pos` against the class
    prompt "This is a photo of a {}" and `M_neg` against its negation "This is not a photo of a {}" (Comp-TGA.py:208,
    235; attention_map.py:32-62), and the two attention terms weighted 0.10 and 0.07 (`--Alpha`, `--Beta`,
    Comp-TGA.py:102-103). The rest is TGA-ZSR's: PGD 1/255, step 1/255, 2 steps from a uniform random start, CE at
    scale 100 on the CLS embedding, SGD momentum 0.9, lr 1e-4, no weight decay, 1000 warm-up steps then cosine, batch
    128, 10 epochs on Tiny-ImageNet, Resize(256) + CenterCrop(224), CLIP's normalisation, fp16 autocast with a
    GradScaler on CUDA; `evaluate()` runs the tga_zsr protocol's PGD-100 (Comp-TGA.py:56 `--test_numsteps 100`).

    Two quirks of the official code are not reproduced: it reseeds torch and CUDA with `--seed` inside every attention
    map and loss call (attention_map.py:33-35, Comp-TGA.py:483-485), so each batch's attack starts from the same
    random draw, and the attack's backward leaves gradients in the parameters' `.grad` that the training step then
    adds to (tiny under its GradScaler). Here each batch draws a fresh random start and the attack's gradients are
    taken with respect to the perturbation only.
    """

    alpha: float = field(
        default=0.10,
        metadata={
            "help": "Weight of mean ||A_t(x') - A_0(x)||_2 on the complementary map (official `--Alpha` 0.10, "
            "Comp-TGA.py:102)."
        },
    )
    beta: float = field(
        default=0.07,
        metadata={
            "help": "Weight of mean ||A_t(x) - A_0(x)||_2 on the complementary map (official `--Beta` 0.07, "
            "Comp-TGA.py:103)."
        },
    )
    negation_template: str = field(
        default="This is not a photo of a {}",
        metadata={"help": "The negated prompt of M_neg; `{}` is the class name (Comp-TGA.py:235)."},
    )

    def __post_init__(self) -> None:
        check_fields(self)  # typed before the templates are compared
        check_template(self.negation_template)
        if self.negation_template == self.prompt_template:
            raise InputError(
                "negation_template equals prompt_template: M_pos * (1 - M_neg) would be M * (1 - M); give the "
                "negated prompt, e.g. 'This is not a photo of a {}'."
            )
        super().__post_init__()
