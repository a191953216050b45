"""Load an image-classification dataset from the Hub, a local folder or the generated tiny default."""

from __future__ import annotations

import glob
import logging
import os
import re

from datasets import ClassLabel, Dataset, DatasetDict, Features, concatenate_datasets, load_dataset, load_from_disk
from datasets import Image as ImageFeature

from ..constants import BAD_IMAGE_POLICIES
from .generated import GENERATED, colour_patches
from .images import to_rgb
from .registry import Benchmark, get_benchmark, pinned_revision

logger = logging.getLogger(__name__)


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
        dataset = colour_patches(
            num_per_class=96 if split == "train" else 48, seed=seed if split == "train" else seed + 1
        )
    elif os.path.isdir(name):
        dataset = _load_local(name, split)
    else:
        dataset = load_dataset(name, config, split=split, revision=revision)
    if isinstance(dataset, DatasetDict):
        dataset = _pick_split(dataset, split, name)
    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    return dataset


def _load_local(path: str, split: str):
    """A local copy: `save_to_disk` folder, parquet files or an image folder, split by datasets' own inference.

    A folder whose files name no split (one `train` split inferred) serves any requested split; otherwise the
    requested split must exist, and the error lists the ones found (never another split's rows silently).
    """
    if os.path.exists(os.path.join(path, "dataset_dict.json")) or os.path.exists(os.path.join(path, "state.json")):
        data = load_from_disk(path)
    elif glob.glob(os.path.join(path, "**", "*.parquet"), recursive=True):
        data = load_dataset("parquet", data_dir=path)
    else:
        data = load_dataset("imagefolder", data_dir=path)
    if isinstance(data, DatasetDict):
        if split not in data and list(data) == ["train"] and not _names_a_split(path):
            return data["train"]  # an unsplit folder: its only data
        return _pick_split(data, split, path)
    return data


def _names_a_split(path: str) -> bool:
    """Whether any file or folder below `path` is named after a split (then datasets' inference is trusted)."""
    pattern = re.compile(r"(^|[/_.\-])(train|test|valid|validation|val|dev|eval)([/_.\-]|$)")
    return any(pattern.search(os.path.relpath(f, path)) for f in glob.glob(os.path.join(path, "**"), recursive=True))


class BadImageError(ValueError):
    """An image that cannot be decoded; the message names the dataset and the row index."""


def normalize_name(name: str) -> str:
    """A key for matching class names across sources: `"001.ak47"`, `"Faces_easy"`, `"ak-47"` -> `"ak47"`, ..."""
    name = re.sub(r"^\d+\.", "", str(name).strip())
    name = re.sub(r"-101$", "", name)
    return re.sub(r"\s+", " ", re.sub(r"[_\-/]", " ", name)).strip().lower()


def load_benchmark(
    name: str,
    split: str | None = None,
    data_dir: str | None = None,
    revision: str | None = None,
    max_samples: int | None = None,
    streaming: bool = False,
    on_bad_image: str = "raise",
):
    """Load a registered benchmark in the common schema: `image` (RGB PIL images) and `label` (`ClassLabel`).

    Args:
        name (`str`): a registry name (`pmg-aft datasets list`), e.g. `cifar10` or `tiny-imagenet`.
        split (`str`, *optional*): defaults to the benchmark's evaluation split; `train` for Tiny-ImageNet training.
        data_dir (`str`, *optional*): a local copy instead of the Hub: a `save_to_disk` folder, parquet files or an
            image folder, in the Hub dataset's own schema (same column names and label encoding).
        revision (`str`, *optional*): a Hub revision; defaults to the registry's pin, else the commit recorded by
            `pmg-aft datasets download` (`pinned_revision`).
        max_samples (`int`, *optional*): keep the first `max_samples` rows.
        streaming (`bool`): return an `IterableDataset` that reads as it goes.
        on_bad_image (`str`): `"raise"` (default) raises [`BadImageError`] naming the dataset and index of the first
            image that cannot be decoded; `"skip"` drops such rows and logs how many. Images are checked once,
            before training or evaluation starts (while iterating, for streaming datasets).

    Returns:
        `datasets.Dataset` (or `IterableDataset`) with `image` and `label` columns; `label` is a `ClassLabel` whose
        names are the registry's class names in label order.
    """
    bench = get_benchmark(name)
    if on_bad_image not in BAD_IMAGE_POLICIES:
        raise ValueError(f"on_bad_image={on_bad_image!r} is not one of {BAD_IMAGE_POLICIES}.")
    hub_split = bench.hub_split(split)
    if data_dir is not None:
        if not os.path.isdir(data_dir):
            raise FileNotFoundError(f"data_dir {data_dir!r} is not a folder; pass the folder of the local copy.")
        raw = _load_local(data_dir, hub_split)
        if isinstance(raw, DatasetDict):
            raw = _pick_split(raw, hub_split, data_dir)
        if streaming:
            raw = raw.to_iterable_dataset()
    else:
        raw = load_dataset(
            bench.hub_id,
            bench.config,
            split=hub_split,
            revision=revision or pinned_revision(bench.name),
            streaming=streaming,
        )
    if max_samples is not None:
        raw = raw.take(max_samples) if streaming else raw.select(range(min(max_samples, len(raw))))
    return to_common_schema(raw, bench, on_bad_image)


def _pick_split(data: DatasetDict, split: str, where: str) -> Dataset:
    if split not in data:
        raise ValueError(f"Split {split!r} not found in {where}; its splits are {list(data)}.")
    return data[split]


def to_common_schema(raw, bench: Benchmark, on_bad_image: str = "raise"):
    """Rename, select and re-encode a benchmark's columns into `image` + `label` (`ClassLabel`)."""
    columns = raw.column_names
    if columns is not None:
        missing = [c for c in (bench.image_column, bench.label_column) if c not in columns]
        if missing:
            raise ValueError(
                f"{bench.name}: column(s) {missing} not found; the data has columns {columns}. The registry expects "
                f"{bench.hub_id}'s schema (image column {bench.image_column!r}, label column {bench.label_column!r})."
            )
    data = raw.select_columns([bench.image_column, bench.label_column])
    if bench.image_column != "image":
        data = data.rename_column(bench.image_column, "image")
    if bench.label_column != "label":
        data = data.rename_column(bench.label_column, "label")
    names, mapping = _label_mapping(data.features["label"] if data.features else None, bench)
    # Undecoded until checked: nothing below may decode (and die on) a corrupt image.
    data = _encode_labels(data.cast_column("image", ImageFeature(decode=False)), names, mapping, bench.name)
    data = check_images(data, bench.name, "image", on_bad_image)
    # Grayscale, palette, RGBA, CMYK and 16-bit images become 8-bit RGB as they are read.
    if streaming_dataset(data):
        return data.map(lambda row: {"image": to_rgb(row["image"])}, features=data.features)
    return data.with_transform(_rgb_rows)


def _encode_labels(data, names: list[str], mapping: dict | None, name: str):
    """Labels as `ClassLabel(names)`, mapped through `mapping`; the image column is not copied."""
    target = ClassLabel(names=names)

    def encode(labels):
        encoded = [_map_label(label, mapping, name) if mapping is not None else int(label) for label in labels]
        bad = [label for label in encoded if not 0 <= label < len(names)]
        if bad:
            raise ValueError(f"{name}: label(s) {bad[:5]} outside the {len(names)} classes.")
        return {"label": encoded}

    if streaming_dataset(data):  # lazily, with the features declared so the ClassLabel survives
        features = Features({"image": data.features["image"], "label": target}) if data.features else None
        return data.map(encode, input_columns="label", batched=True, features=features)
    # Re-encode the small label column on its own and put it back beside the untouched image column: casting or
    # mapping the whole table would rewrite every image.
    labels = data.select_columns(["label"]).map(
        encode, input_columns="label", batched=True, features=Features({"label": target})
    )
    return concatenate_datasets([data.select_columns(["image"]), labels], axis=1)


def _rgb_rows(batch: dict) -> dict:
    if "image" in batch:
        batch["image"] = [to_rgb(image) for image in batch["image"]]
    return batch


def streaming_dataset(data) -> bool:
    return not isinstance(data, Dataset)


def _label_mapping(feature, bench) -> tuple[list[str], dict | None]:
    """The target class names and a source-label -> target-index mapping (`None`: labels are already right)."""
    source_names = getattr(feature, "names", None)
    dtype = getattr(feature, "dtype", None)
    target = bench.class_names
    if not target:  # Caltech-256: the names come from the dataset itself
        if not source_names:
            raise ValueError(f"{bench.name}: the label column has no class names to read; expected a ClassLabel.")
        return [normalize_name(n) for n in source_names], None
    if dtype == "bool":
        return target, {False: 0, True: 1}
    if source_names is None and dtype not in ("string", "large_string"):
        return target, None  # plain integers in the registry's order
    keys = {normalize_name(n): i for i, n in enumerate(target)}
    keys.update({normalize_name(a): i for i, a in enumerate(bench.aliases)})
    if source_names is None:  # strings (FGVC-Aircraft's variant): map each value by name
        return target, {"__by_name__": keys}
    if not bench.match_labels_by_name:
        if len(source_names) != len(target):
            raise ValueError(f"{bench.name}: {len(source_names)} source classes, expected {len(target)}.")
        return target, None
    unknown = [n for n in source_names if normalize_name(n) not in keys]
    if unknown:
        raise ValueError(
            f"{bench.name}: class name(s) {unknown[:5]} of the data are not in the registry's list of "
            f"{len(target)} ({target[:3]}...). Is this the right dataset and revision?"
        )
    indices = [keys[normalize_name(n)] for n in source_names]
    if indices == list(range(len(target))):
        return target, None
    present = sorted(set(indices))  # e.g. Caltech101 without its background class
    position = {i: k for k, i in enumerate(present)}
    return [target[i] for i in present], {source: position[i] for source, i in enumerate(indices)}


def _map_label(label, mapping: dict, name: str) -> int:
    if "__by_name__" in mapping:
        key = normalize_name(label)
        if key not in mapping["__by_name__"]:
            raise ValueError(f"{name}: label {label!r} is not one of the registry's class names.")
        return mapping["__by_name__"][key]
    return mapping[label]


def _decodable(image) -> bool:
    try:
        to_rgb(image).load()
        return True
    except Exception:  # any decoder error means the same thing here: this image is unusable
        return False


def check_images(data, name: str, image_column: str = "image", on_bad_image: str = "raise"):
    """Check every image once, before training or evaluation: raise naming the first bad one, or drop and count.

    Args:
        data (`Dataset` or `IterableDataset`): the dataset; an `IterableDataset` is checked lazily as it is read.
        name (`str`): the dataset's name, for messages.
        image_column (`str`): the image column.
        on_bad_image (`str`): `"raise"` ([`BadImageError`] with the index) or `"skip"` (logged with the count).

    Returns:
        The dataset (without the bad rows with `"skip"`), its image column decoded as PIL images.
    """
    if on_bad_image not in BAD_IMAGE_POLICIES:
        raise ValueError(f"on_bad_image={on_bad_image!r} is not one of {BAD_IMAGE_POLICIES}.")
    data = data.cast_column(image_column, ImageFeature(decode=False))
    if streaming_dataset(data):

        def keep(row, index):
            if _decodable(row[image_column]):
                return True
            if on_bad_image == "raise":
                raise BadImageError(f"{name}: the image at index {index} cannot be decoded (corrupt or truncated).")
            logger.warning("%s: skipping the undecodable image at index %d.", name, index)
            return False

        return data.filter(keep, with_indices=True).cast_column(image_column, ImageFeature())
    ok = data.map(
        lambda images: {"ok": [_decodable(im) for im in images]}, input_columns=image_column, batched=True,
        remove_columns=data.column_names,
    )["ok"]  # fmt: skip
    bad = [i for i, good in enumerate(ok) if not good]
    if bad and on_bad_image == "raise":
        raise BadImageError(
            f"{name}: the image at index {bad[0]} cannot be decoded (corrupt or truncated); {len(bad)} bad image(s) "
            "in all. Pass on_bad_image='skip' to drop them."
        )
    if bad:
        logger.warning("%s: skipped %d undecodable image(s), at indices %s.", name, len(bad), bad[:10])
        data = data.select([i for i, good in enumerate(ok) if good])
    return data.cast_column(image_column, ImageFeature())
