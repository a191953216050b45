"""decode_on_device: JPEG bytes decoded by torchvision where training runs (here the CPU; CUDA's nvJPEG on a GPU),
resized and cropped there, against the host path (PIL). Needs torchvision, so it runs in the interop environment."""

import copy
import io

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features
from datasets import Image as ImageFeature
from PIL import Image

pytest.importorskip("torchvision")

from pmg_aft import TRAINERS  # noqa: E402
from pmg_aft.data import ImageClassificationCollator  # noqa: E402
from pmg_aft.data.streaming import EncodedImages, decode_on_device  # noqa: E402
from pmg_aft.tiny import tiny_clip, tiny_tokenizer  # noqa: E402

from ..utils import snapshot  # noqa: E402


def photo_like(seed: int, height: int, width: int) -> Image.Image:
    """Smooth colour fields plus grain: ImageNet-like content for a lossy codec."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray((rng.random((height // 16 + 2, width // 16 + 2, 3)) * 255).astype(np.uint8))
    smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float64)
    return Image.fromarray(np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8))


def encoded(image: Image.Image, kind: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=kind, **({"quality": 90} if kind == "JPEG" else {}))
    return buffer.getvalue()


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_device_decoding_matches_the_host_path(interpolation):
    sizes = [(350, 400), (300, 500), (480, 270), (224, 224)]
    blobs = [encoded(photo_like(i, h, w)) for i, (h, w) in enumerate(sizes)]
    blobs.append(encoded(photo_like(9, 260, 300), "PNG"))  # not a JPEG: decoded on the host, in the same batch
    host = ImageClassificationCollator(image_size=224, crop_pct=224 / 256, interpolation=interpolation)
    expected = host([{"image": {"bytes": b, "path": None}, "label": 0} for b in blobs])["pixel_values"]
    got = decode_on_device(EncodedImages(blobs), torch.device("cpu"), 224, 256, interpolation)
    assert got.shape == expected.shape == (5, 3, 224, 224) and got.dtype == torch.float32
    levels = (got - expected).abs() * 255
    if interpolation == "bilinear":
        assert levels.max() <= 1.01  # the same decoder output, resized within 1/255 of PIL
    else:  # PIL clamps between its two bicubic passes: a few pixels near sharp edges differ by a few levels
        assert (levels > 1.01).float().mean() < 0.01 and levels.max() <= 8


def test_a_training_step_on_device_decoded_bytes_equals_the_host_path():
    names = ["red", "green", "blue", "yellow"]
    blobs = [encoded(photo_like(i, 40 + 4 * i, 48)) for i in range(8)]
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=names)})
    images = [{"bytes": blob, "path": None} for blob in blobs]
    data = Dataset.from_dict({"image": images, "label": [i % 4 for i in range(8)]}, features=features)
    base, updates = tiny_clip(seed=0), []
    for on_device in (False, True):
        trainer_class = TRAINERS["tecoa"]
        args = trainer_class.config_class(
            output_dir="unused", use_cpu=True, report_to="none", save_strategy="no", disable_tqdm=True,
            per_device_train_batch_size=8, max_steps=1, learning_rate=0.5, warmup_steps=0, seed=0,
            attack_random_start=False, decode_on_device=on_device,
        )  # fmt: skip
        model = copy.deepcopy(base)
        trainer = trainer_class(model, args, train_dataset=data, processing_class=tiny_tokenizer(), class_names=names)
        trainer.train()
        updates.append(snapshot(trainer.model))
    start = snapshot(base)
    host, device = ([u[n] - start[n] for n in start] for u in updates)
    size = sum(u.norm() ** 2 for u in host) ** 0.5
    gap = sum((a - b).norm() ** 2 for a, b in zip(host, device)) ** 0.5
    # Pixels within 1/255 of each other give nearly the same update (a different batch would differ by about as
    # much as the update itself).
    assert size > 0 and gap < 0.01 * size, (float(gap), float(size))
