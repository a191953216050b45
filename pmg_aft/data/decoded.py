"""The fast training data path: every image decoded once to uint8, resized and cropped on the accelerator.

The default path decodes, resizes (to 256), crops and converts each image on the host at every epoch: about 2 ms for
a 64 px Tiny-ImageNet JPEG, and 602 KB of float32 per image sent to the device. Here each image is decoded once into
one uint8 array held in memory (12 KB per 64 px image; Tiny-ImageNet's 100,000 training images take 1.2 GB), a batch
is a slice of that array, and [`preprocess_on_device`] resizes and crops it inside the step, to within 1/255 of the
host path's pixels.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Image as ImageFeature

from ..errors import InputError
from .images import to_rgb
from .loading import BadImageError

logger = logging.getLogger(__name__)


class DecodedImages(torch.utils.data.Dataset):
    r"""A dataset's images decoded once into a `(rows, 3, height, width)` uint8 tensor, with its labels.

    Rows are `{"pixel_values": uint8 (3, height, width), "labels": int}` (no `labels` without a label column); the
    trainer's collator stacks them and [`preprocess_on_device`] finishes them on the accelerator.

    Args:
        dataset (`datasets.Dataset`): rows with an image column (and a label column); every image must have the same
            size (Tiny-ImageNet's are all 64 x 64), since a batch is one uint8 tensor.
        image_column, label_column (`str`): the columns (`label_column=None`: no labels, for FARE).
        name (`str`): how errors name the dataset.
    """

    def __init__(self, dataset, image_column: str = "image", label_column: str | None = "label", name: str = "train"):
        began = time.time()
        raw = dataset
        if isinstance(getattr(dataset, "features", {}).get(image_column), ImageFeature):
            raw = dataset.cast_column(image_column, ImageFeature(decode=False))  # bytes: decoded once, below
        self.images: torch.Tensor | None = None
        size = None
        cells = (cell for batch in raw.iter(batch_size=1024) for cell in batch[image_column])
        for index, cell in enumerate(cells):
            try:
                array = np.asarray(to_rgb(cell), dtype=np.uint8)
            except (OSError, ValueError, TypeError) as error:
                raise BadImageError(f"{name}: the image at index {index} cannot be decoded ({error}).") from error
            if size is None:
                size = array.shape[:2]
                self.images = torch.empty((len(raw), 3, *size), dtype=torch.uint8)
            elif array.shape[:2] != size:
                raise InputError(
                    f"{name}: the image at index {index} is {array.shape[1]}x{array.shape[0]} but the first is "
                    f"{size[1]}x{size[0]}; preprocess_on_device needs images of one size (a batch is one uint8 "
                    "tensor). Turn it off to resize each image on the host."
                )
            self.images.numpy()[index] = array.transpose(2, 0, 1)  # one copy, into the shared array
        if self.images is None:
            raise InputError(f"{name} is empty (0 rows).")
        self.labels = None
        if label_column is not None and label_column in dataset.column_names:
            self.labels = torch.as_tensor(dataset.with_format("numpy")[label_column]).long()
        shape = "x".join(map(str, self.images.shape[1:]))
        logger.info("%s: decoded %d images once (%s uint8, %.1f MB) in %.1f s.", name, len(self.images), shape,
                    self.images.numel() / 1e6, time.time() - began)  # fmt: skip

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        row = {"pixel_values": self.images[index]}
        if self.labels is not None:
            row["labels"] = self.labels[index]
        return row


class DecodedCollator:
    """Stack [`DecodedImages`] rows into `{"pixel_values": uint8 (batch, 3, H, W), "labels"}`: no pixel work."""

    def __call__(self, rows) -> dict[str, torch.Tensor]:
        batch = {"pixel_values": torch.stack([row["pixel_values"] for row in rows])}
        if "labels" in rows[0]:
            batch["labels"] = torch.stack([row["labels"] for row in rows])
        return batch


def preprocess_on_device(
    images: torch.Tensor, image_size: int, resize_size: int | None, interpolation: str = "bilinear"
) -> torch.Tensor:
    """uint8 `(batch, 3, H, W)` images to float32 in [0, 1], resized and centre-cropped where they are.

    The same geometry and filter as the host path's bilinear `resize_center_crop` (the shorter side to
    `resize_size`, the output size rounded as PIL does, a centre crop of `image_size` offset by
    `round((size - crop) / 2)`, antialiasing when shrinking, as PIL filters), rounded to the 1/255 grid as PIL's uint8
    output is: every pixel is within 1/255 of the host path's (tests/test_decoded.py). Bicubic (torch's antialiased
    bicubic, PIL's kernel) is offered for the JPEG path of streaming data; PIL clamps between its two passes, which a
    float resize does not, so bicubic pixels can differ from PIL's by a few levels near sharp edges.

    Args:
        images (`torch.Tensor`): uint8, `(batch, 3, height, width)`.
        image_size (`int`): the crop.
        resize_size (`int` or `None`): the shorter side before the crop; `None` keeps the images as they are
            (`native_resolution`).
        interpolation (`str`): `"bilinear"` or `"bicubic"`.
    """
    x = images.float().div_(255.0)
    if resize_size is None:
        return x
    height, width = x.shape[-2:]
    scale = resize_size / min(height, width)
    if height <= width:
        size = (resize_size, max(1, round(width * scale)))
    else:
        size = (max(1, round(height * scale)), resize_size)
    if size != (height, width):
        shrinking = size[0] < height or size[1] < width
        mode = "bicubic" if interpolation == "bicubic" else "bilinear"
        # antialias=True is torch's PIL-compatible kernel (bicubic a = -0.5, not -0.75), upsampling included.
        x = F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=shrinking or mode == "bicubic")
        x = x.clamp_(0, 1).mul_(255).round_().div_(255)
    top, left = int(round((size[0] - image_size) / 2.0)), int(round((size[1] - image_size) / 2.0))
    return x[..., top : top + image_size, left : left + image_size].contiguous()
