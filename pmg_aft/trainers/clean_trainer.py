"""`CleanFinetuneTrainer`: plain zero-shot fine-tuning of the image tower, the non-robust baseline."""

from __future__ import annotations

import torch

from ..losses import batch_clip_loss, clean_loss
from ..methods import MethodInfo
from .base_trainer import RobustCLIPTrainer
from .clean_config import CleanFinetuneConfig


class CleanFinetuneTrainer(RobustCLIPTrainer):
    r"""Fine-tunes a `CLIPModel`'s image tower on clean images, no attack: TGA-ZSR's FT-Clean (the symmetric CLIP
    loss over the batch's own classes) or the cross-entropy of its zero-shot logits (`loss`). The reference point for
    what adversarial fine-tuning costs in clean accuracy and buys in robustness. See [`RobustCLIPTrainer`] for the
    arguments.
    """

    config_class = CleanFinetuneConfig
    method_info = MethodInfo(
        key="clean",
        name="clean fine-tuning",
        description=(
            "plain (non-adversarial) fine-tuning on clean images (TGA-ZSR's FT-Clean: the symmetric CLIP loss over "
            "the batch's own classes). It is not adversarially trained: it is the non-robust reference point for "
            "robust methods."
        ),
        paper=None,
        tags=("fine-tuned",),
        recipes=("clean_vitb32_tinyimagenet",),
    )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The clean loss of `args.loss` (a batch mean)."""
        images, labels = inputs["pixel_values"], inputs["labels"]
        target = self.classifier()
        with self.accelerator.autocast():
            clean_logits = target.logits_from_embeddings(self.image_embeddings(model, target.preprocess(images)))
        if self.args.loss == "batch_clip":
            loss = self._global_batch_clip_loss(clean_logits, labels)
            self.log_metric("batch_clip", loss)
        else:
            loss = clean_loss(clean_logits, labels)
            self.log_metric("ce", loss)
        self.log_metric("train_clean_accuracy", (clean_logits.argmax(-1) == labels).float().mean())
        return (loss, {"clean_logits": clean_logits}) if return_outputs else loss

    def _global_batch_clip_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """[`batch_clip_loss`] over the global batch. Every process gathers all rows, its own keeping their gradient
        (scaled by the process count, the value unchanged): DDP's average of the processes' shares is then the global
        loss's gradient, whatever the process count."""
        world = self.accelerator.num_processes
        if world == 1:
            return batch_clip_loss(logits, labels)
        rows = self.accelerator.gather(logits.detach())  # equal shards: accelerate evens the batches out
        all_labels = self.accelerator.gather(labels)
        own = logits + (world - 1) * (logits - logits.detach())  # forward: logits; backward: world x the gradient
        start = self.accelerator.process_index * len(labels)
        rows = torch.cat([rows[:start], own.to(rows.dtype), rows[start + len(labels) :]])
        return batch_clip_loss(rows, all_labels)
