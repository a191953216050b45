"""The generated colour-patch set: an image-classification dataset in the Hub schema that needs no download.

It is the embedded default's data (`dataset_name: colour-patches`), so the demo and the tests run offline through
the same code paths as Hub datasets (`image` + `ClassLabel` columns).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from datasets import ClassLabel, Dataset, Features
from datasets import Image as ImageFeature
from PIL import Image

from ..errors import InputError

GENERATED = "colour-patches"

# Muted colours on a noisy grey background: easy enough for a tiny CLIP to learn in seconds, hard enough that a
# few grey levels of adversarial noise fool it (so robustness has room to improve).
COLORS = {
    "red": (157, 104, 104),
    "green": (104, 145, 113),
    "blue": (104, 113, 157),
    "yellow": (161, 155, 104),
    "purple": (132, 107, 143),
    "orange": (163, 132, 99),
}


def colour_patches(
    num_per_class: int = 32,
    class_names: Sequence[str] = tuple(COLORS),
    image_size: int = 32,
    seed: int = 0,
) -> Dataset:
    """A generated classification set in the Hub schema (`image`: PIL RGB, `label`: `ClassLabel`).

    Each image is a noisy grey background with a square of the class's colour at a random place and size.
    """
    unknown = [n for n in class_names if n not in COLORS]
    if unknown:
        raise InputError(f"Unknown colour class(es) {unknown}; choose from {sorted(COLORS)}.")
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for index in range(num_per_class * len(class_names)):
        label = index % len(class_names)
        pixels = rng.normal(128, 30, size=(image_size, image_size, 3))
        side = int(rng.integers(image_size // 3, image_size // 2 + 1))
        top, left = rng.integers(0, image_size - side + 1, size=2)
        colour = np.asarray(COLORS[class_names[label]]) + rng.normal(0, 12, size=3)
        pixels[top : top + side, left : left + side] = colour + rng.normal(0, 8, size=(side, side, 3))
        images.append(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)))
        labels.append(label)
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=list(class_names))})
    return Dataset.from_dict({"image": images, "label": labels}, features=features)
