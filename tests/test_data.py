import numpy as np
import pytest
import torch
from PIL import Image

from pmg_aft.data import (
    ImageClassificationCollator,
    imagenet_wnid_to_name,
    load_image_dataset,
    resize_center_crop,
    resolve_class_names,
    to_rgb,
)


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (20, 10), 128),
        Image.new("RGBA", (20, 10), (10, 20, 30, 0)),
        Image.new("CMYK", (20, 10), (0, 0, 0, 0)),
        Image.new("P", (20, 10), 3),
        Image.fromarray(np.full((10, 20), 65535, dtype=np.uint16)),
        np.zeros((10, 20, 3), dtype=np.uint8),
        np.ones((10, 20), dtype=np.float32),
    ],
    ids=["grayscale", "rgba", "cmyk", "palette", "16-bit", "array", "float-array"],
)
def test_every_image_kind_becomes_8bit_rgb(image):
    rgb = to_rgb(image)
    assert rgb.mode == "RGB" and rgb.size == (20, 10)


def test_16_bit_white_stays_white():
    assert np.asarray(to_rgb(Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16)))).min() == 255


def test_resize_center_crop_matches_torchvision_convention():
    image = Image.new("RGB", (64, 48))
    assert resize_center_crop(image, 256, 224).size == (224, 224)
    # Shorter side to 256 first: a 64 x 48 image becomes 341 x 256 before the crop.
    assert resize_center_crop(image, 256, 256).size == (256, 256)


def test_collator_outputs_unit_range_floats_and_int64_labels(test_set):
    batch = ImageClassificationCollator(image_size=224)([test_set[0], test_set[1]])
    assert batch["pixel_values"].shape == (2, 3, 224, 224) and batch["pixel_values"].dtype == torch.float32
    assert 0 <= batch["pixel_values"].min() and batch["pixel_values"].max() <= 1
    assert batch["labels"].dtype == torch.int64 and batch["labels"].tolist() == [
        test_set[0]["label"],
        test_set[1]["label"],
    ]
    # Resize to size * 256 / 224, then crop, for other model sizes.
    collator = ImageClassificationCollator(image_size=32)
    assert collator.resize_size == 37 and collator([test_set[0]])["pixel_values"].shape == (1, 3, 32, 32)


def test_collator_errors_name_the_columns_found(test_set):
    with pytest.raises(KeyError, match=r"\['img'\].*columns \['image', 'label'\]"):
        ImageClassificationCollator(image_column="img")([test_set[0]])
    mixed = [{"image": Image.new("RGB", (8, 8)), "label": 0}, {"image": Image.new("RGB", (9, 9)), "label": 0}]
    with pytest.raises(ValueError, match="one size per batch"):
        ImageClassificationCollator(native_resolution=True)(mixed)


def test_wordnet_ids_map_to_imagenet_names():
    table = imagenet_wnid_to_name()
    assert len(table) == 1000 and table["n02119789"] == "kit_fox"
    assert resolve_class_names(["n02119789", "n02100735"]) == ["kit_fox", "English_setter"]
    assert resolve_class_names(["cat", "dog"]) == ["cat", "dog"]
    with pytest.raises(ValueError, match="n99999999"):
        resolve_class_names(["n99999999"])


def test_local_folders_load_like_hub_datasets(tmp_path, test_set):
    test_set.save_to_disk(str(tmp_path / "disk"))
    assert load_image_dataset(str(tmp_path / "disk"), max_samples=5).features == test_set.features
    (tmp_path / "pq").mkdir()
    test_set.to_parquet(str(tmp_path / "pq" / "test-00000.parquet"))
    loaded = load_image_dataset(str(tmp_path / "pq"), split="test")
    assert len(loaded) == len(test_set) and loaded.features["label"].names == test_set.features["label"].names
    with pytest.raises(ValueError, match="splits are"):
        from datasets import DatasetDict

        DatasetDict({"train": test_set}).save_to_disk(str(tmp_path / "dd"))
        load_image_dataset(str(tmp_path / "dd"), split="valid")
