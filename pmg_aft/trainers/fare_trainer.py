"""`FARETrainer`: FARE, unsupervised adversarial fine-tuning of CLIP's image embedding (Schlarmann et al.)."""

from __future__ import annotations

import torch

from ..errors import InputError
from ..losses import fare_loss, squared_distance
from ..methods import MethodInfo, Paper
from .base_trainer import RobustCLIPTrainer
from .fare_config import FAREConfig

FARE_PAPER = Paper(
    title="Robust CLIP: Unsupervised Adversarial Fine-Tuning of Vision Embeddings for Robust Large Vision-Language "
    "Models",
    authors="Christian Schlarmann, Naman Deep Singh, Francesco Croce and Matthias Hein",
    venue="ICML 2024",
    arxiv_id="2402.12336",
    bibtex="""@inproceedings{schlarmann2024robustclip,
  title     = {Robust {CLIP}: Unsupervised Adversarial Fine-Tuning of Vision Embeddings for Robust Large
               Vision-Language Models},
  author    = {Schlarmann, Christian and Singh, Naman Deep and Croce, Francesco and Hein, Matthias},
  booktitle = {Proceedings of the 41st International Conference on Machine Learning (ICML)},
  year      = {2024}
}""",
)


class FARETrainer(RobustCLIPTrainer):
    r"""FARE fine-tuning of a `CLIPModel`'s image tower: PGD maximises `||E_t(x') - E_0(x)||^2` on unnormalised image
    embeddings (`E_0` the frozen pre-trained model), and the step minimises the same distance. No labels and no text
    are used; the train set needs only an image column. See [`RobustCLIPTrainer`] for the arguments.
    """

    config_class = FAREConfig
    method_info = MethodInfo(
        key="fare",
        name="FARE",
        description=(
            "unsupervised adversarial fine-tuning: the image embedding of a PGD adversarial image is pulled to the "
            "frozen original model's embedding of the clean image (squared L2), so the model stays a drop-in "
            "replacement for the original encoder. No labels or text are used in training."
        ),
        paper=FARE_PAPER,
        tags=("adversarial-robustness", "adversarial-training", "fare"),
        recipes=(
            "fare_vitb32_imagenet",
            "fare_vitl14_imagenet_eps2",
            "fare_vitl14_imagenet_eps4",
            "fare_vitl14_336_imagenet_eps2",
        ),
    )

    @classmethod
    def check_arguments(cls, args: FAREConfig, ref_model) -> None:
        if not args.attack_random_start and ref_model is None:
            raise InputError(
                "FARE needs attack_random_start=True when the reference is a copy of the model: its objective "
                "||E_t(x+d) - E_0(x)||^2 has a zero gradient at d = 0 while the model equals the reference, so PGD "
                "without a random start never moves."
            )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Maximise, then minimise, `||E_t(x') - E_0(x)||^2` (a batch mean)."""
        images = inputs["pixel_values"]
        target, reference = self.image_encoder(), self.image_encoder(reference=True)
        with self.accelerator.autocast():
            with torch.no_grad():
                anchor = reference.encode_images(images, normalize=False).float()
            adv_images = self.attack(target, images, anchor, loss=squared_distance)
            embeddings = self.image_embeddings(model, target.preprocess(adv_images), normalize=False)
        loss = fare_loss(embeddings, anchor)
        self.log_metric("fare_distance", loss)
        return (loss, {"adv_embeddings": embeddings}) if return_outputs else loss
