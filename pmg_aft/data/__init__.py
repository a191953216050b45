"""Data: the benchmark registry, loading into one schema, image conversion, the collator and dataset checks."""

from .classnames import (
    check_label_order,
    dataset_class_names,
    imagenet_wnid_to_name,
    prompt_class_names,
    resolve_class_names,
)
from .decoded import DecodedCollator, DecodedImages, preprocess_on_device
from .generated import GENERATED, colour_patches
from .images import ImageClassificationCollator, image_to_tensor, resize_center_crop, to_rgb
from .loading import (
    BadImageError,
    BenchmarkUnavailableError,
    check_images,
    hub_split_files,
    is_unsplit_folder,
    load_benchmark,
    load_image_dataset,
    load_streaming_split,
    normalize_name,
    rgb_images,
    select_classes,
    take_rows,
)
from .registry import BENCHMARKS, EVAL_SUITE, Benchmark, Head, get_benchmark, pinned_revision
from .sample_lists import SAMPLE_LISTS, robustbench_imagenet_files, select_files
from .validation import check_class_count, check_dataset, check_labels, rows_digest

__all__ = [
    "DecodedCollator",
    "DecodedImages",
    "preprocess_on_device",
    "BENCHMARKS",
    "EVAL_SUITE",
    "GENERATED",
    "BadImageError",
    "BenchmarkUnavailableError",
    "Benchmark",
    "Head",
    "SAMPLE_LISTS",
    "robustbench_imagenet_files",
    "select_files",
    "ImageClassificationCollator",
    "check_dataset",
    "check_images",
    "check_class_count",
    "check_labels",
    "colour_patches",
    "dataset_class_names",
    "get_benchmark",
    "hub_split_files",
    "is_unsplit_folder",
    "image_to_tensor",
    "imagenet_wnid_to_name",
    "load_benchmark",
    "load_image_dataset",
    "load_streaming_split",
    "normalize_name",
    "pinned_revision",
    "resize_center_crop",
    "prompt_class_names",
    "check_label_order",
    "resolve_class_names",
    "rows_digest",
    "rgb_images",
    "select_classes",
    "take_rows",
    "to_rgb",
]
