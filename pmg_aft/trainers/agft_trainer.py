"""`AGFTTrainer`: Alignment-Guided Fine-Tuning for zero-shot adversarial robustness (Cui et al., CVPR 2026)."""

from __future__ import annotations

import torch

from ..losses import agft_loss, soft_cross_entropy
from ..methods import MethodInfo, Paper
from .agft_config import AGFTConfig
from .base_trainer import RobustCLIPTrainer

AGFT_PAPER = Paper(
    title="AGFT: Alignment-Guided Fine-Tuning for Zero-Shot Adversarial Robustness of Vision-Language Models",
    authors="Yubo Cui, Xianchao Guan, Zijun Xiong and Zheng Zhang",
    venue="CVPR 2026",
    arxiv_id="2603.29410",
    bibtex="""@inproceedings{cui2026agft,
  title     = {{AGFT}: Alignment-Guided Fine-Tuning for Zero-Shot Adversarial Robustness of Vision-Language Models},
  author    = {Cui, Yubo and Guan, Xianchao and Xiong, Zijun and Zhang, Zheng},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {22836--22846},
  year      = {2026}
}""",
)


class AGFTTrainer(RobustCLIPTrainer):
    r"""AGFT fine-tuning of a `CLIPModel`'s image tower.

    The frozen model's clean prediction, softened at the teacher's scale, is the target: `p = softmax(s_t * cos(V_0(x),
    T))`. PGD maximises the soft-label cross-entropy of the student's `s_s * cos(V_t(x'), T)` against `p`, and the
    step minimises it on the adversarial images (no clean term). `T` are the class prompt embeddings of the frozen
    text tower. See [`RobustCLIPTrainer`] for the arguments.
    """

    config_class = AGFTConfig
    method_info = MethodInfo(
        key="agft",
        name="AGFT",
        description=(
            "adversarial fine-tuning against calibrated soft labels: the frozen original model's zero-shot "
            "prediction on the clean image, at a softer scale, is the target of a soft-label cross-entropy on PGD "
            "images (and the objective the attack maximises)."
        ),
        paper=AGFT_PAPER,
        tags=("adversarial-robustness", "adversarial-training", "agft"),
        recipes=("agft_vitb32_tinyimagenet", "agft_vitb32_imagenet"),
    )

    def student_logits(self, head, embeddings: torch.Tensor) -> torch.Tensor:
        """`s_s * cos(embeddings, T)` from unit-norm image embeddings, in float32."""
        return self.args.train_logit_scale * embeddings.float() @ head.class_embeddings.t()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Soft labels from the frozen model, the attack on the same loss, the soft-label cross-entropy."""
        args = self.args
        images = inputs["pixel_values"]
        target, reference = self.classifier(), self.classifier(reference=True)
        # The heads' logits are at logit_scale (the evaluation's); the loss and the attack are at s_s.
        to_student = args.train_logit_scale / float(target.scale())

        def objective(logits: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
            return soft_cross_entropy(logits.float() * to_student, probabilities)

        with self.accelerator.autocast():
            with torch.no_grad():
                reference_cos = reference.encode_images(images).float() @ reference.class_embeddings.t()
                teacher = (args.teacher_logit_scale * reference_cos).softmax(dim=-1)
            adv_images = self.attack(target, images, teacher, loss=objective)
            adv_logits = self.student_logits(target, self.image_embeddings(model, target.preprocess(adv_images)))
        loss = agft_loss(adv_logits, teacher)
        self.log_metric("soft_ce", loss)
        if "labels" in inputs:
            self.log_metric("train_robust_accuracy", (adv_logits.argmax(-1) == inputs["labels"]).float().mean())
        return (loss, {"adv_logits": adv_logits, "teacher": teacher}) if return_outputs else loss
