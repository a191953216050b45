"""Published lists of evaluation samples: the rows of a Hub copy that a published evaluation used, by file name."""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources

import pyarrow.compute as pc
from datasets import Image as ImageFeature

from ..errors import InputError

# What each list is, for reports and cards.
SAMPLE_LISTS = {
    "robustbench": "RobustBench's 5,000 ImageNet validation images (robustbench helper_files/"
    "imagenet_test_image_ids.txt), as FARE's ImageNet figures",
}


@lru_cache(maxsize=1)
def robustbench_imagenet_files() -> tuple[str, ...]:
    """RobustBench's 5,000 ImageNet validation file names (`ILSVRC2012_val_NNNNNNNN.JPEG`), in its order."""
    text = resources.files("pmg_aft.data").joinpath("robustbench_imagenet_ids.txt").read_text(encoding="utf-8")
    return tuple(os.path.basename(line.strip()) for line in text.splitlines() if line.strip())


def select_files(data, files: tuple[str, ...], name: str, list_name: str):
    """The rows of `data` (common schema, a `datasets.Dataset`) whose image file names are `files`, in that order.

    Raises:
        InputError: naming how many of the files the data has, when it lacks some (a copy without file names, or
            another split).
    """
    if not hasattr(data, "with_format"):
        raise InputError(f"{name}: the {list_name} sample list needs a map-style dataset, not a streamed one.")
    # The path field alone, through Arrow: the image bytes are never decoded or copied.
    images = data.with_format(None).cast_column("image", ImageFeature(decode=False)).with_format("arrow")["image"]
    paths = pc.struct_field(images, "path").to_pylist()
    names = [os.path.basename(p) if p else None for p in paths]
    index = {n: i for i, n in enumerate(names) if n is not None}
    rows = [index[f] for f in files if f in index]
    if len(rows) != len(files):
        missing = [f for f in files if f not in index]
        raise InputError(
            f"{name}: {len(rows)} of the {len(files)} images of {list_name} are in the data ({len(data)} rows; "
            f"missing e.g. {missing[:2]}; {sum(n is None for n in names)} rows carry no file name). Use a copy of "
            "the validation split whose images keep their ILSVRC2012_val_*.JPEG file names, or evaluate a seeded "
            "sample instead (--imagenet_samples all)."
        )
    return data.select(rows)
