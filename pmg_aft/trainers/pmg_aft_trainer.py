"""`PMGAFTTrainer`: Pre-trained Model Guided Adversarial Fine-Tuning (Wang et al., CVPR 2024)."""

from __future__ import annotations

import torch

from ..losses import pmg_aft_loss
from ..methods import MethodInfo, Paper
from .base_trainer import RobustCLIPTrainer
from .pmg_aft_config import PMGAFTConfig

PMG_AFT_PAPER = Paper(
    title="Pre-trained Model Guided Fine-Tuning for Zero-Shot Adversarial Robustness",
    authors="Sibo Wang, Jie Zhang, Zheng Yuan and Shiguang Shan",
    venue="CVPR 2024",
    arxiv_id="2401.04350",
    bibtex="""@inproceedings{wang2024pmgaft,
  title     = {Pre-trained Model Guided Fine-Tuning for Zero-Shot Adversarial Robustness},
  author    = {Wang, Sibo and Zhang, Jie and Yuan, Zheng and Shan, Shiguang},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2024}
}""",
)


class PMGAFTTrainer(RobustCLIPTrainer):
    r"""PMG-AFT adversarial fine-tuning of a `CLIPModel`'s image tower.

    Each step attacks the current model with PGD (`train_eps`, `train_step_size`, `train_steps`), then minimises
    `CE(z_t(x'), y) + alpha * KL(p_0(x') || p_t(x')) + beta * KL(p_t(x) || p_t(x'))`, where `p_0` comes from a frozen
    copy of the pre-trained model (only when `alpha > 0`). Gradients flow through both `z_t(x')` and `z_t(x)`.
    See [`RobustCLIPTrainer`] for the arguments.
    """

    config_class = PMGAFTConfig
    method_info = MethodInfo(
        key="pmg_aft",
        name="PMG-AFT",
        description=(
            "adversarial fine-tuning on PGD images, guided by the frozen pre-trained model (a KL term towards its "
            "predictions on the adversarial images) and by the model's own clean predictions, to keep zero-shot "
            "generalisation while gaining robustness."
        ),
        paper=PMG_AFT_PAPER,
        tags=("adversarial-robustness", "adversarial-training", "pmg-aft"),
        recipes=("pmg_aft_vitb32_tinyimagenet",),
    )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Attack the current model, then the PMG-AFT loss on the batch (a batch mean)."""
        args = self.args
        images, labels = inputs["pixel_values"], inputs["labels"]
        target = self.classifier()
        with self.accelerator.autocast():
            adv_images = self.attack(target, images, labels)
            # One forward of [x'; x] instead of two: the same maths (no batch statistics in ViT), one DDP forward.
            batch = torch.cat([adv_images, images]) if args.beta > 0 else adv_images
            logits = target.logits_from_embeddings(self.image_embeddings(model, target.preprocess(batch)))
            adv_logits = logits[: len(images)]
            clean_logits = logits[len(images) :] if args.beta > 0 else None
            ref_logits = None
            if args.alpha > 0:
                with torch.no_grad():
                    ref_logits = self.classifier(reference=True)(adv_images)
        terms = pmg_aft_loss(adv_logits, labels, clean_logits, ref_logits, alpha=args.alpha, beta=args.beta,
                             kl_direction=args.kl_direction)  # fmt: skip
        self.log_metric("ce", terms.ce)
        self.log_metric("guidance_kl", terms.guidance_kl)
        self.log_metric("clean_kl", terms.clean_kl)
        self.log_metric("train_robust_accuracy", (adv_logits.argmax(-1) == labels).float().mean())
        if clean_logits is not None:
            self.log_metric("train_clean_accuracy", (clean_logits.argmax(-1) == labels).float().mean())
        outputs = {"adv_logits": adv_logits, "clean_logits": clean_logits}
        return (terms.loss, outputs) if return_outputs else terms.loss
