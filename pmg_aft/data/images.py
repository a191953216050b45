"""Image conversion and the default collator: dataset rows -> `{"pixel_values": [0, 1] floats, "labels": int64}`."""

from __future__ import annotations

import io
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..constants import DEFAULT_CROP_PCT
from ..errors import InputError, UnknownNameError

RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def to_rgb(image: Any) -> Image.Image:
    """Return an 8-bit RGB `PIL.Image` from a PIL image (any mode), an HWC/HW array, a path or an encoded dict.

    Grayscale, palette, RGBA/LA (alpha dropped), CMYK and 16-bit or float images are converted.
    """
    if isinstance(image, dict) and ("bytes" in image or "path" in image):
        image = Image.open(io.BytesIO(image["bytes"])) if image.get("bytes") else Image.open(image["path"])
    elif isinstance(image, str):
        image = Image.open(image)
    elif isinstance(image, np.ndarray):
        image = Image.fromarray(_to_uint8(image))
    if not isinstance(image, Image.Image):
        raise TypeError(f"Cannot read an image from a {type(image).__name__}; expected a PIL image, array or path.")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = Image.fromarray(_to_uint8(np.asarray(image)))
    if image.mode == "P":
        image = image.convert("RGBA")
    return image if image.mode == "RGB" else image.convert("RGB")


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind == "f":
        return (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    # 16-bit (or wider) integers: scale the full range of the type down to 8 bits.
    return (array.astype(np.float64) * 255.0 / np.iinfo(array.dtype).max + 0.5).astype(np.uint8)


def resize_center_crop(image: Image.Image, resize: int, crop: int, interpolation: str = "bilinear") -> Image.Image:
    """Resize the shorter side to `resize`, then centre-crop a `crop` x `crop` square (torchvision's convention)."""
    width, height = image.size
    scale = resize / min(width, height)
    new_w, new_h = (
        (resize, max(1, round(height * scale))) if width <= height else (max(1, round(width * scale)), resize)
    )
    image = image.resize((new_w, new_h), RESAMPLING[interpolation])
    left, top = int(round((new_w - crop) / 2.0)), int(round((new_h - crop) / 2.0))
    return image.crop((left, top, left + crop, top + crop))


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """`(3, H, W)` float32 tensor in [0, 1] from an RGB PIL image."""
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


class ImageClassificationCollator:
    r"""Collate image-classification rows into `{"pixel_values", "labels"}` for the attack and the trainer.

    Images are converted to RGB, resized (shorter side `image_size / crop_pct`: 256 for a 224 model at the default
    `crop_pct = 224 / 256`) and centre-cropped to `image_size`, as the paper's training pipeline does. With
    `native_resolution=True` they keep their size (all images of a batch must then have the same size) and the
    classifier resizes them inside the differentiable graph, so the perturbation lives at the dataset's resolution
    (CIFAR, STL-10).

    Args:
        image_column (`str`): column with the images.
        label_column (`str`): column with integer labels.
        image_size (`int`): crop size, normally the model's input resolution.
        native_resolution (`bool`): keep images at their size instead of resize + crop.
        crop_pct (`float`): the crop's share of the resized shorter side: `224 / 256` (PMG-AFT, TeCoA, TGA-ZSR:
            Resize(256) + CenterCrop(224)) or `1.0` (FARE: Resize(224) + CenterCrop(224)).
        interpolation (`str`): `"bilinear"` (torchvision's default, used by the official code) or `"bicubic"`.
        require_labels (`bool`): `False` for unsupervised methods (FARE): rows without labels give no `labels`.
    """

    def __init__(
        self,
        image_column: str = "image",
        label_column: str = "label",
        image_size: int = 224,
        native_resolution: bool = False,
        interpolation: str = "bilinear",
        require_labels: bool = True,
        crop_pct: float = DEFAULT_CROP_PCT,
    ) -> None:
        if interpolation not in RESAMPLING:
            raise InputError(f"interpolation={interpolation!r} is not one of {sorted(RESAMPLING)}.")
        if not 0 < crop_pct <= 1:
            raise InputError(f"crop_pct={crop_pct} must be in (0, 1]: the crop's share of the resized image.")
        self.image_column = image_column
        self.label_column = label_column
        self.image_size = int(image_size)
        self.resize_size = int(round(self.image_size / crop_pct))
        self.native_resolution = native_resolution
        self.interpolation = interpolation
        self.require_labels = require_labels

    def _pixels(self, image: Any) -> torch.Tensor:
        image = to_rgb(image)
        if not self.native_resolution:
            image = resize_center_crop(image, self.resize_size, self.image_size, self.interpolation)
        return image_to_tensor(image)

    def _label(self, value) -> int:
        """An integer class index; text or a fractional number is an error rather than truncated by `int()`."""
        if isinstance(value, bool) or not isinstance(value, numbers.Real) and not hasattr(value, "__index__"):
            raise InputError(f"label {value!r} in column '{self.label_column}' is not an integer class index.")
        if int(value) != value:
            raise InputError(
                f"label {value!r} in column '{self.label_column}' is fractional: labels are class indices."
            )
        return int(value)

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if len(examples) == 0:
            raise InputError("Cannot collate an empty batch.")
        needed = (self.image_column, self.label_column) if self.require_labels else (self.image_column,)
        missing = [c for c in needed if c not in examples[0]]
        if missing:
            raise UnknownNameError(
                f"Column(s) {missing} not found; the examples have columns {sorted(examples[0])}. "
                "Set image_column / label_column to the right names."
            )
        pixels = [self._pixels(example[self.image_column]) for example in examples]
        sizes = {tuple(p.shape[-2:]) for p in pixels}
        if len(sizes) > 1:
            raise InputError(
                f"native_resolution=True needs images of one size per batch, got sizes {sorted(sizes)}; "
                "turn native_resolution off to resize and crop them."
            )
        batch = {"pixel_values": torch.stack(pixels)}
        if self.label_column in examples[0]:
            batch["labels"] = torch.tensor([self._label(example[self.label_column]) for example in examples])
        return batch
