"""pmg_aft: robust fine-tuning of Hugging Face CLIP models for zero-shot adversarial robustness.

PMG-AFT (Wang et al., CVPR 2024) and the methods it is compared with (TeCoA, FARE, TGA-ZSR, clean fine-tuning), one
Config/Trainer pair each on `transformers.Trainer`, registered in `TRAINERS`; the zero-shot classifier, PGD and the
evaluation suite.
"""

from .attack_settings import AttackGrid, AttackSetting
from .attacks import margin_loss, pgd
from .constants import CLIP_MEAN, CLIP_STD, DEFAULT_TEMPLATE, IMAGENET_MEAN, IMAGENET_STD, __version__
from .errors import InputError
from .evaluation import (
    DatasetResult,
    EvalLoader,
    EvalSet,
    Protocol,
    Report,
    benchmark_eval_set,
    evaluate_robustness,
    get_protocol,
)
from .losses import (
    PMGAFTLoss,
    batch_clip_loss,
    clean_loss,
    fare_loss,
    kl_divergence,
    pmg_aft_loss,
    squared_distance,
    tecoa_loss,
)
from .prompts import clean_class_name
from .provenance import Licence, Provenance
from .trainers import *  # noqa: F403  (every method's Config/Trainer pair, from the registry's modules)
from .trainers import __all__ as _trainers
from .zeroshot import ImageEncoder, ZeroShotClassifier, build_class_embeddings, clip_processor

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "DEFAULT_TEMPLATE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AttackGrid",
    "AttackSetting",
    "DatasetResult",
    "EvalLoader",
    "EvalSet",
    "ImageEncoder",
    "InputError",
    "Licence",
    "PMGAFTLoss",
    "Protocol",
    "Provenance",
    "Report",
    "ZeroShotClassifier",
    "__version__",
    "benchmark_eval_set",
    "build_class_embeddings",
    "clean_class_name",
    "batch_clip_loss",
    "clean_loss",
    "clip_processor",
    "evaluate_robustness",
    "fare_loss",
    "get_protocol",
    "kl_divergence",
    "margin_loss",
    "pgd",
    "pmg_aft_loss",
    "squared_distance",
    "tecoa_loss",
    *_trainers,
]
