"""pmg_aft: adversarial fine-tuning of Hugging Face CLIP models for zero-shot robustness (PMG-AFT, CVPR 2024)."""

from .attacks import margin_loss, pgd
from .config import PMGAFTConfig
from .losses import PMGAFTLoss, clean_loss, fare_loss, kl_divergence, pmg_aft_loss, squared_distance, tecoa_loss
from .trainer import PMGAFTTrainer
from .zeroshot import (
    CLIP_MEAN,
    CLIP_STD,
    DEFAULT_TEMPLATE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageEncoder,
    ZeroShotClassifier,
    build_class_embeddings,
    clean_class_name,
)

__version__ = "0.1.0"

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "DEFAULT_TEMPLATE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PMGAFTConfig",
    "PMGAFTLoss",
    "PMGAFTTrainer",
    "ImageEncoder",
    "clean_loss",
    "fare_loss",
    "squared_distance",
    "ZeroShotClassifier",
    "build_class_embeddings",
    "clean_class_name",
    "kl_divergence",
    "margin_loss",
    "pgd",
    "pmg_aft_loss",
    "tecoa_loss",
]
