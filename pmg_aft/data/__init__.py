"""Data helpers: image conversion, the default collator, class names."""

from .classnames import dataset_class_names, imagenet_wnid_to_name, resolve_class_names
from .images import ImageClassificationCollator, image_to_tensor, resize_center_crop, to_rgb
from .loading import BadImageError, check_images, load_benchmark, load_image_dataset, normalize_name
from .registry import BENCHMARKS, EVAL_SUITE, PROTOCOLS, Benchmark, get_benchmark

__all__ = [
    "BENCHMARKS",
    "EVAL_SUITE",
    "PROTOCOLS",
    "BadImageError",
    "Benchmark",
    "check_images",
    "get_benchmark",
    "load_benchmark",
    "normalize_name",
    "ImageClassificationCollator",
    "dataset_class_names",
    "image_to_tensor",
    "imagenet_wnid_to_name",
    "load_image_dataset",
    "resize_center_crop",
    "resolve_class_names",
    "to_rgb",
]
