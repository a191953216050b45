"""Load an image-classification dataset from the Hub, a local folder or the generated tiny default."""

from __future__ import annotations

import glob
import os

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

GENERATED = "colour-patches"


def load_image_dataset(
    name: str,
    split: str = "train",
    config: str | None = None,
    revision: str | None = None,
    max_samples: int | None = None,
    seed: int = 0,
) -> Dataset:
    """Load one split of an image-classification dataset as a `datasets.Dataset`.

    Args:
        name (`str`): a Hub dataset id (`zh-plus/tiny-imagenet`), a local `save_to_disk` folder, a folder of parquet
            files, an image folder (`class_name/image.jpg`), or `colour-patches` for the generated offline set
            (splits `train` and anything else for a held-out set).
        split (`str`): the split to load.
        config (`str`, *optional*): the Hub configuration name.
        revision (`str`, *optional*): a Hub revision (commit sha or tag) to pin.
        max_samples (`int`, *optional*): keep the first `max_samples` rows.
        seed (`int`): seed of the generated set.
    """
    if name == GENERATED:
        from ..tiny import colour_patches

        dataset = colour_patches(
            num_per_class=96 if split == "train" else 48, seed=seed if split == "train" else seed + 1
        )
    elif os.path.isdir(name):
        dataset = _load_local(name, split)
    else:
        dataset = load_dataset(name, config, split=split, revision=revision)
    if isinstance(dataset, DatasetDict):
        if split not in dataset:
            raise ValueError(f"Split {split!r} not found in {name}; its splits are {list(dataset)}.")
        dataset = dataset[split]
    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    return dataset


def _load_local(path: str, split: str):
    if os.path.exists(os.path.join(path, "dataset_dict.json")) or os.path.exists(os.path.join(path, "state.json")):
        return load_from_disk(path)
    parquet = sorted(glob.glob(os.path.join(path, "**", "*.parquet"), recursive=True))
    if parquet:
        split_files = [f for f in parquet if os.path.basename(f).startswith(split) or f"/{split}/" in f]
        return load_dataset("parquet", data_files=split_files or parquet, split="train")
    split_dir = os.path.join(path, split)
    return load_dataset("imagefolder", data_dir=split_dir if os.path.isdir(split_dir) else path, split="train")
