"""`TeCoATrainer`: TeCoA, cross-entropy of the zero-shot logits on adversarial images (Mao et al., ICLR 2023)."""

from __future__ import annotations

from ..losses import tecoa_loss
from ..methods import MethodInfo, Paper
from .base_trainer import RobustCLIPTrainer
from .tecoa_config import TeCoAConfig

TECOA_PAPER = Paper(
    title="Understanding Zero-Shot Adversarial Robustness for Large-Scale Models",
    authors="Chengzhi Mao, Scott Geng, Junfeng Yang, Xin Wang and Carl Vondrick",
    venue="ICLR 2023",
    arxiv_id="2212.07016",
    bibtex="""@inproceedings{mao2023understanding,
  title     = {Understanding Zero-Shot Adversarial Robustness for Large-Scale Models},
  author    = {Mao, Chengzhi and Geng, Scott and Yang, Junfeng and Wang, Xin and Vondrick, Carl},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2023}
}""",
)


class TeCoATrainer(RobustCLIPTrainer):
    r"""TeCoA adversarial fine-tuning of a `CLIPModel`'s image tower: each step attacks the current model with PGD,
    then minimises `CE(z_t(x'), y)` over the class-prompt embeddings. It is PMG-AFT's loss with `alpha = beta = 0`,
    and needs no reference model. See [`RobustCLIPTrainer`] for the arguments.
    """

    config_class = TeCoAConfig
    method_info = MethodInfo(
        key="tecoa",
        name="TeCoA",
        description=(
            "text-guided contrastive adversarial training: cross-entropy of the zero-shot logits (image embedding "
            "against the class-prompt text embeddings) on PGD adversarial images."
        ),
        paper=TECOA_PAPER,
        tags=("adversarial-robustness", "adversarial-training", "tecoa"),
        recipes=("tecoa_vitb32_tinyimagenet", "tecoa_vitl14_imagenet_eps2", "tecoa_vitl14_imagenet_eps4"),
    )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Attack the current model, then the cross-entropy on the adversarial images (a batch mean)."""
        images, labels = inputs["pixel_values"], inputs["labels"]
        target = self.classifier()
        with self.accelerator.autocast():
            adv_images = self.attack(target, images, labels)
            adv_logits = target.logits_from_embeddings(self.image_embeddings(model, target.preprocess(adv_images)))
        loss = tecoa_loss(adv_logits, labels)
        self.log_metric("ce", loss)
        self.log_metric("train_robust_accuracy", (adv_logits.argmax(-1) == labels).float().mean())
        return (loss, {"adv_logits": adv_logits}) if return_outputs else loss
