"""pmg_aft: robust fine-tuning of Hugging Face CLIP models for zero-shot adversarial robustness.

PMG-AFT (Wang et al., CVPR 2024) and the methods it is compared with (TeCoA, FARE, TGA-ZSR, clean fine-tuning), one
Config/Trainer pair each on `transformers.Trainer`; the zero-shot classifier, PGD and the evaluation suite.
"""

from .attacks import AttackSetting, margin_loss, pgd
from .constants import CLIP_MEAN, CLIP_STD, DEFAULT_TEMPLATE, IMAGENET_MEAN, IMAGENET_STD, __version__
from .evaluation import EvalSet, Report, benchmark_eval_set, evaluate_robustness
from .losses import PMGAFTLoss, clean_loss, fare_loss, kl_divergence, pmg_aft_loss, squared_distance, tecoa_loss
from .prompts import clean_class_name
from .trainers import (
    TRAINERS,
    CleanFinetuneConfig,
    CleanFinetuneTrainer,
    FAREConfig,
    FARETrainer,
    PMGAFTConfig,
    PMGAFTTrainer,
    RobustCLIPConfig,
    RobustCLIPTrainer,
    TeCoAConfig,
    TeCoATrainer,
    TGAZSRConfig,
    TGAZSRTrainer,
)
from .zeroshot import ImageEncoder, ZeroShotClassifier, build_class_embeddings, clip_processor

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "DEFAULT_TEMPLATE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TRAINERS",
    "AttackSetting",
    "CleanFinetuneConfig",
    "CleanFinetuneTrainer",
    "EvalSet",
    "FAREConfig",
    "FARETrainer",
    "ImageEncoder",
    "PMGAFTConfig",
    "PMGAFTLoss",
    "PMGAFTTrainer",
    "Report",
    "RobustCLIPConfig",
    "RobustCLIPTrainer",
    "TGAZSRConfig",
    "TGAZSRTrainer",
    "TeCoAConfig",
    "TeCoATrainer",
    "ZeroShotClassifier",
    "__version__",
    "benchmark_eval_set",
    "build_class_embeddings",
    "clean_class_name",
    "clean_loss",
    "clip_processor",
    "evaluate_robustness",
    "fare_loss",
    "kl_divergence",
    "margin_loss",
    "pgd",
    "pmg_aft_loss",
    "squared_distance",
    "tecoa_loss",
]
