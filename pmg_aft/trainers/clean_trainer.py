"""`CleanFinetuneTrainer`: plain zero-shot fine-tuning of the image tower, the non-robust baseline."""

from __future__ import annotations

from ..losses import clean_loss
from ..methods import MethodInfo
from .base_trainer import RobustCLIPTrainer
from .clean_config import CleanFinetuneConfig


class CleanFinetuneTrainer(RobustCLIPTrainer):
    r"""Fine-tunes a `CLIPModel`'s image tower with the cross-entropy of its zero-shot logits on clean images; no
    attack. The reference point for what adversarial fine-tuning costs in clean accuracy and buys in robustness. See
    [`RobustCLIPTrainer`] for the arguments.
    """

    config_class = CleanFinetuneConfig
    method_info = MethodInfo(
        key="clean",
        name="clean fine-tuning",
        description=(
            "plain (non-adversarial) fine-tuning with the cross-entropy of the zero-shot logits on clean images. It "
            "is not adversarially trained: it is the non-robust reference point for robust methods."
        ),
        paper=None,
        tags=("fine-tuned",),
    )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Cross-entropy on the clean images (a batch mean)."""
        images, labels = inputs["pixel_values"], inputs["labels"]
        target = self.classifier()
        with self.accelerator.autocast():
            clean_logits = target.logits_from_embeddings(self.image_embeddings(model, target.preprocess(images)))
        loss = clean_loss(clean_logits, labels)
        self.log_metric("ce", loss)
        self.log_metric("train_clean_accuracy", (clean_logits.argmax(-1) == labels).float().mean())
        return (loss, {"clean_logits": clean_logits}) if return_outputs else loss
