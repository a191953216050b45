"""Load an image-classification dataset from the Hub, a local folder or the generated tiny default."""

from __future__ import annotations

import glob
import logging
import os
import re

from datasets import (
    ClassLabel,
    Dataset,
    DatasetDict,
    Features,
    concatenate_datasets,
    load_dataset,
    load_dataset_builder,
    load_from_disk,
)
from datasets import Image as ImageFeature
from datasets.exceptions import DatasetNotFoundError
from huggingface_hub import get_token
from huggingface_hub.errors import HfHubHTTPError

from ..constants import BAD_IMAGE_POLICIES
from .generated import GENERATED, colour_patches
from .images import to_rgb
from .registry import Benchmark, get_benchmark, pinned_revision

logger = logging.getLogger(__name__)
# What "this benchmark cannot be reached from here" looks like: no network (offline mode, connection errors), a
# gated or missing repository, an HTTP error.
UNREACHABLE = (OSError, DatasetNotFoundError, HfHubHTTPError)


class BenchmarkUnavailableError(OSError):
    """A benchmark that cannot be loaded here: not in the local cache and no network, or gated without a token. The
    message is one line that names the benchmark and the ways out."""


def unavailable_message(bench: Benchmark, error: BaseException | None = None) -> str:
    """One line: what cannot be loaded and the two ways out (or, for a gated dataset, how to get access)."""
    if bench.gated and not get_token():
        return (
            f"{bench.name} ({bench.hub_id}) is gated on the Hub: accept its terms at "
            f"https://huggingface.co/datasets/{bench.hub_id} and log in (`hf auth login`, or set HF_TOKEN) before "
            "downloading it."
        )
    cause = f" ({type(error).__name__}: {str(error).splitlines()[0][:160]})" if error is not None else ""
    return (
        f"{bench.name} ({bench.hub_id}) is not in the local Hugging Face cache and the Hub cannot be reached{cause}. "
        f"Run `pmg-aft datasets download {bench.name}` on a machine with network access (and copy its HF_HOME cache "
        f"here), or pass --benchmark_data_dir with a local copy in a `{bench.name}/` sub-folder."
    )


def hub_split_files(bench: Benchmark, split: str, revision: str | None = None) -> list[str]:
    """The data files of one split of a benchmark's Hub dataset (resolved from its card's configs, no data is
    downloaded), so that loading fetches and prepares only that split: `load_dataset(id, split=...)` prepares every
    split (ImageNet ~150 GB, PCAM ~7.6 GB for a 0.75 GB test split)."""
    builder = load_dataset_builder(bench.hub_id, bench.config, revision=revision)
    data_files = builder.config.data_files or {}
    if split not in data_files:
        found = [str(s) for s in data_files]
        raise ValueError(f"{bench.name}: {bench.hub_id} has no split {split!r}; its splits are {found}.")
    return list(data_files[split])


def load_hub_split(bench: Benchmark, split: str, revision: str | None = None, streaming: bool = False):
    """One split of a benchmark's Hub dataset, downloading only that split's files; a clear
    [`BenchmarkUnavailableError`] when it cannot be reached."""
    if bench.gated and not get_token():
        raise BenchmarkUnavailableError(unavailable_message(bench))
    try:
        files = hub_split_files(bench, split, revision)
        return load_dataset(bench.hub_id, bench.config, data_files={split: files}, split=split, revision=revision,
                            streaming=streaming)  # fmt: skip
    except UNREACHABLE as error:
        raise BenchmarkUnavailableError(unavailable_message(bench, error)) from error


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
    name = re.sub(r"-(101|256)$", "", name)
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
    if bench.hub_id is None:  # the generated colour patches: the demo's held-out split, or its training split
        raw = load_image_dataset(GENERATED, split=hub_split)
        if streaming:
            raw = raw.to_iterable_dataset()
    elif data_dir is not None:
        if not os.path.isdir(data_dir):
            raise FileNotFoundError(f"data_dir {data_dir!r} is not a folder; pass the folder of the local copy.")
        raw = _load_local(data_dir, hub_split)
        if isinstance(raw, DatasetDict):
            raw = _pick_split(raw, hub_split, data_dir)
        if streaming:
            raw = raw.to_iterable_dataset()
    else:
        raw = load_hub_split(bench, hub_split, revision or pinned_revision(bench.name), streaming)
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
    wanted = [c for c in (bench.image_column, bench.label_column, bench.name_column) if c]
    if columns is not None:
        missing = [c for c in wanted if c not in columns]
        if missing:
            raise ValueError(
                f"{bench.name}: column(s) {missing} not found; the data has columns {columns}. The registry expects "
                f"{bench.hub_id}'s schema (image column {bench.image_column!r}, label column {bench.label_column!r})."
            )
    if bench.name_column:  # plain integer labels with a name column (Caltech-256's Hub copy)
        names, mapping = _names_from_column(raw, bench)
    data = raw.select_columns([bench.image_column, bench.label_column])
    if bench.image_column != "image":
        data = data.rename_column(bench.image_column, "image")
    if bench.label_column != "label":
        data = data.rename_column(bench.label_column, "label")
    if not bench.name_column:
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


def select_classes(data, names: list[str]):
    """The rows of a dataset in the common schema whose class is one of `names`, relabelled as `ClassLabel(names)`
    (in that order); the image column is not copied. A protocol without some class (the official PMG-AFT
    evaluation has no Caltech101 background) evaluates the others only."""
    current = data.features["label"].names
    unknown = [n for n in names if n not in current]
    if unknown:
        raise ValueError(f"select_classes: {unknown[:3]} are not classes of the data ({current[:3]}...).")
    if list(names) == list(current):
        return data
    position = {n: i for i, n in enumerate(names)}
    mapping = {i: position[n] for i, n in enumerate(current) if n in position}
    plain = data.with_format(None)
    kept = plain.filter(lambda labels: [label in mapping for label in labels], input_columns="label", batched=True)
    return _encode_labels(kept, list(names), mapping, "select_classes").with_transform(_rgb_rows)


def _names_from_column(raw, bench: Benchmark) -> tuple[list[str], dict]:
    """Class names from a name column beside integer labels: one name per label value, labels re-encoded from 0 in
    the order of their values (Caltech-256's Hub copy numbers its 257 classes from 1). Reads the two small columns
    only, never the images."""
    if streaming_dataset(raw):
        raise ValueError(f"{bench.name}: its class names come from its rows; load it without streaming.")
    pairs = raw.select_columns([bench.label_column, bench.name_column]).with_format("arrow")[:]
    by_label: dict = {}
    for label, text in zip(pairs[bench.label_column].to_pylist(), pairs[bench.name_column].to_pylist()):
        if by_label.setdefault(label, text) != text:
            raise ValueError(f"{bench.name}: label {label} is named both {by_label[label]!r} and {text!r}.")
    order = sorted(by_label)
    return [normalize_name(by_label[label]) for label in order], {label: i for i, label in enumerate(order)}


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
