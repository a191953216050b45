"""`TGAZSRTrainer`: Text-Guided Attention for Zero-Shot Robustness (Yu, Zhang and Xu, NeurIPS 2024)."""

from __future__ import annotations

import torch

from ..losses import text_guided_attention, tga_zsr_loss
from ..methods import MethodInfo, Paper
from .base_trainer import RobustCLIPTrainer
from .tga_zsr_config import TGAZSRConfig

TGA_ZSR_PAPER = Paper(
    title="Text-Guided Attention is All You Need for Zero-Shot Robustness in Vision-Language Models",
    authors="Lu Yu, Haiyang Zhang and Changsheng Xu",
    venue="NeurIPS 2024",
    arxiv_id="2410.21802",
    bibtex="""@inproceedings{yu2024tgazsr,
  title     = {Text-Guided Attention is All You Need for Zero-Shot Robustness in Vision-Language Models},
  author    = {Yu, Lu and Zhang, Haiyang and Xu, Changsheng},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  volume    = {37},
  year      = {2024}
}""",
)


class TGAZSRTrainer(RobustCLIPTrainer):
    r"""TGA-ZSR fine-tuning of a `CLIPModel`'s image tower.

    Each step attacks the current model with PGD, then minimises `CE(z_t(x'), y) + alpha * mean ||A_t(x') - A_0(x)||_2
    + beta * mean ||A_t(x) - A_0(x)||_2`, where `A` is the text-guided attention map (every output token projected,
    scored against the sample's class prompt embedding, min-max scaled and resized to the input) and `A_0` comes from
    the frozen pre-trained model. See [`RobustCLIPTrainer`] for the arguments.
    """

    config_class = TGAZSRConfig
    method_info = MethodInfo(
        key="tga_zsr",
        name="TGA-ZSR",
        description=(
            "adversarial fine-tuning with cross-entropy on PGD images plus two text-guided attention terms: the "
            "attention map on adversarial images is pulled to the frozen original model's map on clean images "
            "(attention refinement), and the clean map is kept there too (model constraint)."
        ),
        paper=TGA_ZSR_PAPER,
        tags=("adversarial-robustness", "adversarial-training", "tga-zsr"),
        recipes=("tga_zsr_vitb32_tinyimagenet",),
    )

    def attention_map(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The text-guided attention map of projected output tokens against each label's class prompt embedding
        (the target's frozen text tower), flattened at the model's resolution."""
        head = self.classifier()
        return text_guided_attention(tokens, head.class_embedding(labels), head.image_size)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Attack the current model, then cross-entropy plus the two attention terms (batch means)."""
        args = self.args
        images, labels = inputs["pixel_values"], inputs["labels"]
        target, reference = self.classifier(), self.image_encoder(reference=True)
        with self.accelerator.autocast():
            adv_images = self.attack(target, images, labels)
            out = self.forward_images(model, target.preprocess(torch.cat([adv_images, images])))
            tokens = target.project_tokens(out.vision_model_output.last_hidden_state)
            adv_logits = target.logits_from_embeddings(out.image_embeds[: len(images)])
            attention = self.attention_map(tokens, torch.cat([labels, labels]))
            with torch.no_grad():
                ref_attention = self.attention_map(reference.token_embeddings(images), labels)
        terms = tga_zsr_loss(adv_logits, labels, attention[: len(images)], attention[len(images) :], ref_attention,
                             alpha=args.alpha, beta=args.beta)  # fmt: skip
        self.log_metric("ce", terms.ce)
        self.log_metric("attention_refinement", terms.refinement)
        self.log_metric("attention_constraint", terms.constraint)
        self.log_metric("train_robust_accuracy", (adv_logits.argmax(-1) == labels).float().mean())
        return (terms.loss, {"adv_logits": adv_logits}) if return_outputs else terms.loss
