"""The decode-once training data path: uint8 batches resized and cropped on the device, as the host path would."""

import io

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features
from datasets import Image as ImageFeature
from PIL import Image

from pmg_aft.data import BadImageError, DecodedImages, preprocess_on_device
from pmg_aft.data.images import image_to_tensor, resize_center_crop


def photo(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth random image (noise upsampled), closer to a photo than pixel noise."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(1, height // 8), max(1, width // 8), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR))


FEATURES = Features({"image": ImageFeature(), "label": ClassLabel(names=["a", "b", "c"])})


def jpeg_cells(sizes, seed: int = 0) -> list[dict]:
    """JPEG-encoded cells, as a Hub dataset's image column stores them (Tiny-ImageNet's are 64 px JPEGs)."""
    cells = []
    for i, (height, width) in enumerate(sizes):
        buffer = io.BytesIO()
        Image.fromarray(photo(height, width, seed + i)).save(buffer, format="JPEG", quality=90)
        cells.append({"bytes": buffer.getvalue(), "path": None})
    return cells


def jpeg_set(sizes, seed: int = 0) -> Dataset:
    cells = jpeg_cells(sizes, seed)
    return Dataset.from_dict({"image": cells, "label": [i % 3 for i in range(len(cells))]}, features=FEATURES)


@pytest.mark.parametrize("size", [(64, 64), (60, 80), (300, 200), (500, 375)])
@pytest.mark.parametrize("resize, crop", [(256, 224), (224, 224), (40, 32)])
def test_device_resize_and_crop_is_within_one_grey_level_of_the_host_path(size, resize, crop):
    for noise in (False, True):  # photo-like and worst-case pixel noise
        rng = np.random.default_rng(1)
        array = rng.integers(0, 256, (*size, 3), dtype=np.uint8) if noise else photo(*size, seed=1)
        host = image_to_tensor(resize_center_crop(Image.fromarray(array), resize, crop, "bilinear"))
        device = preprocess_on_device(torch.from_numpy(array.copy()).permute(2, 0, 1)[None], crop, resize)[0]
        assert device.shape == host.shape == (3, crop, crop) and device.dtype == torch.float32
        assert (device - host).abs().max().item() <= 1 / 255 + 1e-6
        assert (device - host).abs().mean().item() < 0.4 / 255


def test_decoded_rows_are_the_images_once_decoded():
    data = jpeg_set([(64, 64)] * 5)
    decoded = DecodedImages(data)
    assert decoded.images.dtype == torch.uint8 and decoded.images.shape == (5, 3, 64, 64)
    for i in range(5):
        expected = torch.from_numpy(np.array(data[i]["image"].convert("RGB"))).permute(2, 0, 1)
        assert torch.equal(decoded[i]["pixel_values"], expected) and decoded[i]["labels"].item() == i % 3
    unlabelled = DecodedImages(data.remove_columns("label"), label_column="label")
    assert "labels" not in unlabelled[0]


def test_decoded_path_errors_name_the_image():
    with pytest.raises(ValueError, match=r"index 2 is 80x60 but the first is 64x64; preprocess_on_device needs"):
        DecodedImages(jpeg_set([(64, 64), (64, 64), (60, 80)]))
    cells = jpeg_cells([(64, 64)] * 3)
    cells[1] = {"bytes": cells[1]["bytes"][:50], "path": None}  # truncated
    data = Dataset.from_dict({"image": cells, "label": [0, 1, 2]}, features=FEATURES)
    with pytest.raises(BadImageError, match="train: the image at index 1 cannot be decoded"):
        DecodedImages(data)


@pytest.mark.parametrize("method", ["pmg_aft", "fare"])
def test_the_trainer_trains_on_device_preprocessed_batches_as_on_host_ones(method, model, make_trainer):
    data = jpeg_set([(48, 48)] * 16)  # resized to 32 / (7/8) = 37 and centre-cropped to 32 on the "device"
    common = dict(train_dataset=data, native_resolution=False, crop_pct=32 / 37, attack_random_start=method == "fare",
                  per_device_train_batch_size=8, interpolation="bilinear")  # fmt: skip
    fast = make_trainer(method, model, preprocess_on_device=True, **common)
    batch = next(iter(fast.get_train_dataloader()))
    assert batch["pixel_values"].dtype == torch.uint8 and batch["pixel_values"].shape[-2:] == (48, 48)
    on_device = fast.prepare_pixels(batch["pixel_values"])
    slow = make_trainer(method, model, preprocess_on_device=False, **common)
    host = next(iter(slow.get_train_dataloader()))  # the same seeded sampler: the same rows, preprocessed by PIL
    assert on_device.shape == host["pixel_values"].shape == (8, 3, 32, 32)
    assert (on_device - host["pixel_values"]).abs().max().item() <= 1 / 255 + 1e-6
    if method == "pmg_aft":
        assert torch.equal(host["labels"], batch["labels"].cpu())
    before = {n: p.detach().clone() for n, p in fast.model.named_parameters() if p.requires_grad}
    fast.train()
    moved = [n for n, p in fast.model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert moved and all(n.startswith(("vision_model", "visual_projection")) for n in moved)


def test_bicubic_needs_the_host_path(make_config):
    with pytest.raises(ValueError, match="preprocess_on_device resizes bilinearly"):
        make_config("fare", preprocess_on_device=True, interpolation="bicubic", native_resolution=False)
