"""Data helpers: image conversion, the default collator, class names."""

from .classnames import dataset_class_names, imagenet_wnid_to_name, resolve_class_names
from .images import ImageClassificationCollator, image_to_tensor, resize_center_crop, to_rgb
from .loading import load_image_dataset

__all__ = [
    "ImageClassificationCollator",
    "dataset_class_names",
    "image_to_tensor",
    "imagenet_wnid_to_name",
    "load_image_dataset",
    "resize_center_crop",
    "resolve_class_names",
    "to_rgb",
]
