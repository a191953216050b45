"""`CompTGATrainer`: Complementary Text-Guided Attention (Yu, Zhang and Xu, TPAMI 2026)."""

from __future__ import annotations

import torch

from ..losses import complementary_attention
from ..methods import MethodInfo, Paper
from .comp_tga_config import CompTGAConfig
from .tga_zsr_trainer import TGAZSRTrainer

COMP_TGA_PAPER = Paper(
    title="Complementary Text-Guided Attention for Zero-Shot Adversarial Robustness",
    authors="Lu Yu, Haiyang Zhang and Changsheng Xu",
    venue="TPAMI 2026",
    arxiv_id="2603.18598",
    bibtex="""@article{yu2026comptga,
  title   = {Complementary Text-Guided Attention for Zero-Shot Adversarial Robustness},
  author  = {Yu, Lu and Zhang, Haiyang and Xu, Changsheng},
  journal = {IEEE Transactions on Pattern Analysis and Machine Intelligence},
  year    = {2026}
}""",
)


class CompTGATrainer(TGAZSRTrainer):
    r"""Comp-TGA fine-tuning of a `CLIPModel`'s image tower: TGA-ZSR's step (PGD, then cross-entropy plus the two
    attention terms against the frozen model's clean map) on the complementary map `A = M_pos * (1 - M_neg)` of
    the class prompt and its negation. See [`RobustCLIPTrainer`] for the arguments.
    """

    config_class = CompTGAConfig
    method_info = MethodInfo(
        key="comp_tga",
        name="Comp-TGA",
        description=(
            "adversarial fine-tuning with cross-entropy on PGD images plus two complementary text-guided attention "
            "terms: the map of the class prompt times one minus the map of its negation ('This is not a photo of "
            "a ...'), pulled on adversarial and on clean images to the frozen original model's clean map."
        ),
        paper=COMP_TGA_PAPER,
        tags=("adversarial-robustness", "adversarial-training", "comp-tga"),
        recipes=("comp_tga_vitb32_tinyimagenet",),
        extends="tga_zsr",
    )

    def attention_map(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """`M_pos * (1 - M_neg)` for each label's class prompt and its negation."""
        positive = self.classifier()
        negative = self.classifier(templates=[self.args.negation_template])
        return complementary_attention(tokens, positive.class_embedding(labels), negative.class_embedding(labels),
                                       positive.image_size)  # fmt: skip
