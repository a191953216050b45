"""Load an image-classification dataset from the Hub, a local folder or the generated tiny default."""

from __future__ import annotations

import glob
import logging
import os
import random
import re

from datasets import ClassLabel, Dataset, DatasetDict, Features, concatenate_datasets, load_dataset, load_from_disk
from datasets import Image as ImageFeature
from datasets.exceptions import DatasetNotFoundError
from huggingface_hub import DatasetCard, get_token, hf_hub_download, is_offline_mode, snapshot_download
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

from ..constants import BAD_IMAGE_POLICIES
from ..errors import InputError, MissingInputError
from .generated import GENERATED, colour_patches
from .images import to_rgb
from .registry import Benchmark, get_benchmark, pinned_revision

logger = logging.getLogger(__name__)


class BenchmarkUnavailableError(InputError, OSError):
    """A benchmark that cannot be loaded here: not in the local cache and no network, or gated without access. The
    message is one line that names the benchmark and the ways out."""


class IncompleteCacheError(MissingInputError):
    """Some of a split's files are in the local cache, not all of them."""


def unavailable_message(bench: Benchmark, error: BaseException | None = None, gated: bool = False) -> str:
    """One line: what cannot be loaded and the two ways out (or, for a gated dataset, how to get access)."""
    if gated:
        return gated_message(f"{bench.name} ({bench.hub_id})", bench.hub_id)
    cause = f" ({type(error).__name__}: {str(error).splitlines()[0][:160]})" if error is not None else ""
    return (
        f"{bench.name} ({bench.hub_id}) is not in the local Hugging Face cache and the Hub cannot be reached{cause}. "
        f"Run `pmg-aft datasets download {bench.name}` on a machine with network access (and copy its HF_HOME cache "
        f"here), or pass --benchmark_data_dir with a local copy in a `{bench.name}/` sub-folder."
    )


def gated_message(label: str, hub_id: str) -> str:
    """One line: the Hub dataset `hub_id` is gated, and how to get access."""
    return (
        f"{label} is gated on the Hub: accept its terms at https://huggingface.co/datasets/{hub_id} and log in "
        "(`hf auth login`, or set HF_TOKEN) before downloading it."
    )


def card_split_patterns(card_path: str, config: str | None, split: str) -> tuple[list[str], list[str]]:
    """The file patterns of `split` of `config` in a dataset card's `configs` (and every split the config has);
    the Hub's default layout (`data/{split}-*`) when the card lists no configs."""
    configs = DatasetCard.load(card_path).data.to_dict().get("configs") or []
    for entry in configs:
        if entry.get("config_name", "default") != (config or "default"):
            continue
        data_files = entry.get("data_files") or []
        if isinstance(data_files, str) or not any(isinstance(d, dict) for d in data_files):
            data_files = [{"split": "train", "path": data_files}]
        by_split = {str(d["split"]): d["path"] for d in data_files}
        paths = by_split.get(split, [])
        return ([paths] if isinstance(paths, str) else list(paths)), list(by_split)
    prefix = f"{config}/" if config else "data/"
    return [f"{prefix}{split}-*", f"{prefix}{split}/*"], []


def _check_shards(files: list[str], where: str) -> None:
    """Raise if shards named `...-00003-of-00018...` are missing: a partly downloaded split is never half-loaded."""
    counts: dict[int, set[int]] = {}
    for name in files:
        match = re.search(r"-(\d{5})-of-(\d{5})", os.path.basename(name))
        if match:
            counts.setdefault(int(match[2]), set()).add(int(match[1]))
    for total, present in counts.items():
        if present != set(range(total)):
            raise IncompleteCacheError(f"{where}: {total - len(present)} of {total} shards are not in the cache.")


def check_parquet_files(files: list[str]) -> list[str]:
    """Raise [`InputError`] naming the first parquet file whose footer cannot be read (a download or a copy cut
    short), before anything is loaded from them; return `files`."""
    import pyarrow.parquet as pq

    for path in files:
        if path.endswith(".parquet"):
            try:
                pq.read_metadata(path)
            except Exception as error:  # pyarrow's errors for a broken file have several types; each names it
                said = f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
                raise InputError(
                    f"{path} is not a readable parquet file ({said}): it may be truncated; download or copy it again."
                ) from error
    return files


def hub_split_files(
    bench: Benchmark, split: str, revision: str | None = None, local_files_only: bool = False
) -> list[str]:
    """Local paths of one split's data files of a benchmark's Hub dataset, downloading them (and its card) into the
    Hugging Face cache unless `local_files_only`. Only that split's files are fetched: `load_dataset(id,
    split=...)` would prepare every split (ImageNet ~150 GB, PCAM ~7.6 GB for a 0.75 GB test split).

    Raises:
        `huggingface_hub.errors.LocalEntryNotFoundError` / [`IncompleteCacheError`]: with `local_files_only`, when
            the card or some of the files are not cached.
        `ValueError`: naming the splits the dataset has, when it has no `split`.
    """
    card = hf_hub_download(bench.hub_id, "README.md", repo_type="dataset", revision=revision,
                           local_files_only=local_files_only)  # fmt: skip
    patterns, splits = card_split_patterns(card, bench.config, split)
    if not patterns:
        raise InputError(f"{bench.name}: {bench.hub_id} has no split {split!r}; its splits are {splits}.")
    folder = snapshot_download(bench.hub_id, repo_type="dataset", revision=revision, allow_patterns=patterns,
                               local_files_only=local_files_only)  # fmt: skip
    files = sorted({f for pattern in patterns for f in glob.glob(os.path.join(folder, pattern)) if os.path.isfile(f)})
    if not files:
        if local_files_only:
            raise IncompleteCacheError(f"{bench.name}: no {split} files of {bench.hub_id} in the cache.")
        raise InputError(f"{bench.name}: {bench.hub_id} has no files for split {split!r} ({patterns}).")
    _check_shards(files, f"{bench.name} ({bench.hub_id}, {split})")
    return check_parquet_files(files)


def load_hub_split(bench: Benchmark, split: str, revision: str | None = None, streaming: bool = False):
    """One split of a benchmark's Hub dataset, from the local cache if it is there (no network, no token needed),
    else downloading only that split's files; a one-line [`BenchmarkUnavailableError`] when it cannot be had."""
    try:
        files = hub_split_files(bench, split, revision, local_files_only=True)
    except (LocalEntryNotFoundError, IncompleteCacheError) as cached_error:
        if is_offline_mode():
            raise BenchmarkUnavailableError(unavailable_message(bench, cached_error)) from cached_error
        if bench.gated and not get_token():  # say so before anything is downloaded
            raise BenchmarkUnavailableError(unavailable_message(bench, gated=True)) from None
        try:
            if streaming:  # read from the Hub as training goes: nothing is downloaded first
                return load_dataset(bench.hub_id, bench.config, split=split, revision=revision, streaming=True)
            files = hub_split_files(bench, split, revision)
        except GatedRepoError as error:
            raise BenchmarkUnavailableError(unavailable_message(bench, gated=True)) from error
        except (LocalEntryNotFoundError, RepositoryNotFoundError, HfHubHTTPError, ConnectionError) as error:
            raise BenchmarkUnavailableError(unavailable_message(bench, error)) from error
    return load_dataset("parquet", data_files={split: files}, split=split, streaming=streaming)


def hub_dataset(name: str, config: str | None, **kwargs):
    """`load_dataset` for a Hub id, with the situations only the user can change (no network and not cached, gated,
    no such dataset) as one line naming the dataset and the way out rather than a traceback."""
    try:
        return load_dataset(name, config, **kwargs)
    except GatedRepoError as error:
        raise BenchmarkUnavailableError(gated_message(name, name)) from error
    except DatasetNotFoundError as error:
        raise MissingInputError(
            f"{name} is neither a local folder nor a dataset on the Hub ({str(error).splitlines()[0][:160]}): give "
            "a folder that exists or a Hub dataset id (check the spelling and your access)."
        ) from error
    except (LocalEntryNotFoundError, ConnectionError) as error:
        raise BenchmarkUnavailableError(
            f"{name} is not in the local Hugging Face cache and the Hub cannot be reached "
            f"({type(error).__name__}: {str(error).splitlines()[0][:160]}). Load it once on a machine with network "
            "access (and copy its HF_HOME cache here), or pass a local folder (`save_to_disk`, parquet files or "
            "class folders) instead."
        ) from error


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
        dataset = hub_dataset(name, config, split=split, revision=revision)
    if isinstance(dataset, DatasetDict):
        dataset = _pick_split(dataset, split, name)
    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    return dataset


def load_streaming_split(name: str, split: str = "train", config: str | None = None, revision: str | None = None,
                         image_column: str = "image", max_samples: int | None = None, shards: int = 64):  # fmt: skip
    """One split of an image dataset as a `datasets.IterableDataset` whose images stay encoded (decoded once, in the
    collator or on the accelerator): a Hub id (read from the Hub as it goes, nothing downloaded first), a folder of
    parquet shards (one stream shard per file), or a `save_to_disk` folder (memory-mapped, cut into `shards`)."""
    if os.path.isdir(name) and not glob.glob(os.path.join(name, "**", "*.parquet"), recursive=True):
        data = _load_local(name, split)
        data = data.to_iterable_dataset(num_shards=max(1, min(shards, len(data))))
    elif os.path.isdir(name):
        files = sorted(glob.glob(os.path.join(name, "**", "*.parquet"), recursive=True))
        named = [f for f in files if re.search(rf"(^|[/_.\-]){re.escape(split)}([/_.\-]|$)", os.path.relpath(f, name))]
        data = load_dataset("parquet", data_files={split: check_parquet_files(named or files)}, split=split,
                            streaming=True)  # fmt: skip
    else:
        data = hub_dataset(name, config, split=split, revision=revision, streaming=True)
    if image_column in (data.column_names or []):
        data = data.cast_column(image_column, ImageFeature(decode=False))
    return data.take(max_samples) if max_samples is not None else data


def _load_local(path: str, split: str):
    """A local copy: `save_to_disk` folder, parquet files or an image folder, split by datasets' own inference.

    A folder whose files name no split (one `train` split inferred) serves any requested split; otherwise the
    requested split must exist, and the error lists the ones found (never another split's rows silently).
    """
    if os.path.exists(os.path.join(path, "dataset_dict.json")) or os.path.exists(os.path.join(path, "state.json")):
        try:
            data = load_from_disk(path)
        except IndexError as error:  # datasets cannot concatenate zero arrow tables
            raise InputError(
                f"{path} holds an empty dataset (0 rows): save one with rows, or pass another folder."
            ) from error
    elif glob.glob(os.path.join(path, "**", "*.parquet"), recursive=True):
        check_parquet_files(sorted(glob.glob(os.path.join(path, "**", "*.parquet"), recursive=True)))
        data = load_dataset("parquet", data_dir=path)
    else:
        data = _labelled(_split_of(load_dataset("imagefolder", data_dir=path), split, path), path)
    return _split_of(data, split, path)


def _split_of(data, split: str, path: str):
    if isinstance(data, DatasetDict):
        if split not in data and list(data) == ["train"] and not _names_a_split(path):
            return data["train"]  # an unsplit folder: its only data
        return _pick_split(data, split, path)
    return data


def _labelled(data: Dataset, path: str) -> Dataset:
    """An image folder's split, refused when datasets gave it no label column (one class folder, or none)."""
    if "label" not in data.column_names:
        raise InputError(
            f"{path}: the image folder has one class folder (or none), so its images have no labels; a zero-shot "
            "head needs at least 2 classes: add a folder per class (SPLIT/CLASS_NAME/IMAGE)."
        )
    return data


def is_unsplit_folder(path: str) -> bool:
    """Whether `path` is a local folder whose data names no split, so that every split requested from it is all of
    its rows (the training split and an eval split alike)."""
    if not os.path.isdir(path) or os.path.exists(os.path.join(path, "dataset_dict.json")):
        return False
    return os.path.exists(os.path.join(path, "state.json")) or not _names_a_split(path)


def _names_a_split(path: str) -> bool:
    """Whether any file or folder below `path` is named after a split (then datasets' inference is trusted)."""
    pattern = re.compile(r"(^|[/_.\-])(train|test|valid|validation|val|dev|eval)([/_.\-]|$)")
    return any(pattern.search(os.path.relpath(f, path)) for f in glob.glob(os.path.join(path, "**"), recursive=True))


class BadImageError(InputError):
    """An image that cannot be decoded; the message names the dataset and the row index."""


def normalize_name(name: str) -> str:
    """A key for matching class names across sources: `"001.ak47"`, `"Faces_easy"`, `"ak-47"` -> `"ak47"`, ..."""
    name = re.sub(r"^\d+\.", "", str(name).strip())
    name = re.sub(r"-(101|256)$", "", name)
    return re.sub(r"\s+", " ", re.sub(r"[_\-/]", " ", name)).strip().lower()


def load_benchmark(
    name: str,
    split: str | None = None,
    *,
    benchmark_data_dir: str | None = None,
    revision: str | None = None,
    max_samples: int | None = None,
    streaming: bool = False,
    on_bad_image: str = "raise",
    sample_seed: int | None = None,
    decode: bool = True,
):
    """Load a registered benchmark in the common schema: `image` (RGB PIL images) and `label` (`ClassLabel`).

    Args:
        name (`str`): a registry name (`pmg-aft datasets list`), e.g. `cifar10` or `tiny-imagenet`.
        split (`str`, *optional*): defaults to the benchmark's evaluation split; `train` for Tiny-ImageNet training.
        benchmark_data_dir (`str`, *optional*): a folder of local copies instead of the Hub, one sub-folder per
            benchmark named as the registry (`cifar10/`, `tiny-imagenet/`): a `save_to_disk` folder, parquet files or
            an image folder, in the Hub dataset's own schema (same column names and label encoding).
        revision (`str`, *optional*): a Hub revision; defaults to the registry's pin, else the commit recorded by
            `pmg-aft datasets download` (`pinned_revision`).
        max_samples (`int`, *optional*): keep `max_samples` rows: the first ones, or with `sample_seed` a seeded
            random sample (kept in dataset order), which covers the classes of a label-sorted split.
        streaming (`bool`): return an `IterableDataset` that reads as it goes.
        on_bad_image (`str`): `"raise"` (default) raises [`BadImageError`] naming the dataset and index of the first
            image that cannot be decoded; `"skip"` drops such rows and logs how many. Images are checked once,
            before training or evaluation starts (while iterating, for streaming datasets).
        sample_seed (`int`, *optional*): see `max_samples` (streaming: a seeded shuffle buffer of 10,000 rows).
        decode (`bool`): `False` leaves the images encoded (`{"bytes", "path"}` cells, `Image(decode=False)`) and
            unchecked, for the streaming training path, which decodes each image once, in the collator or on the
            accelerator, and names a bad one when it meets it.

    Returns:
        `datasets.Dataset` (or `IterableDataset`) with `image` and `label` columns; `label` is a `ClassLabel` whose
        names are the registry's class names in label order.
    """
    bench = get_benchmark(name)
    if on_bad_image not in BAD_IMAGE_POLICIES:
        raise InputError(f"on_bad_image={on_bad_image!r} is not one of {BAD_IMAGE_POLICIES}.")
    hub_split = bench.hub_split(split)
    if bench.hub_id is None:  # the generated colour patches: the demo's held-out split, or its training split
        raw = load_image_dataset(GENERATED, split=hub_split)
        if streaming:
            raw = raw.to_iterable_dataset()
    elif benchmark_data_dir is not None:
        local = os.path.join(benchmark_data_dir, bench.name)
        if not os.path.isdir(local):
            raise MissingInputError(
                f"{benchmark_data_dir} has no {bench.name}/ sub-folder: put the local copy of {bench.name} there "
                "(a save_to_disk folder, parquet files or an image folder), or leave benchmark_data_dir out to load "
                "it from the Hub."
            )
        raw = _load_local(local, hub_split)
        if isinstance(raw, DatasetDict):
            raw = _pick_split(raw, hub_split, local)
        if streaming:
            raw = raw.to_iterable_dataset()
    else:
        raw = load_hub_split(bench, hub_split, revision or pinned_revision(bench.name), streaming)
    return to_common_schema(take_rows(raw, max_samples, sample_seed), bench, on_bad_image, decode)


def take_rows(data, max_samples: int | None, sample_seed: int | None = None):
    """`max_samples` rows of a dataset: the first ones, or a seeded random sample kept in dataset order (a label-
    sorted split's first rows would cover a few classes only)."""
    if max_samples is None:
        return data
    if max_samples < 1:
        raise InputError(f"max_samples={max_samples} must be at least 1 (or None for every row).")
    if streaming_dataset(data):
        data = data.shuffle(seed=sample_seed, buffer_size=10_000) if sample_seed is not None else data
        return data.take(max_samples)
    if sample_seed is None or max_samples >= len(data):
        return data.select(range(min(max_samples, len(data))))
    return data.select(sorted(random.Random(sample_seed).sample(range(len(data)), max_samples)))


def _pick_split(data: DatasetDict, split: str, where: str) -> Dataset:
    if split not in data:
        raise InputError(f"Split {split!r} not found in {where}; its splits are {list(data)}.")
    return data[split]


def to_common_schema(raw, bench: Benchmark, on_bad_image: str = "raise", decode: bool = True):
    """Rename, select and re-encode a benchmark's columns into `image` + `label` (`ClassLabel`); `decode=False`
    leaves the images encoded and unchecked ([`load_benchmark`])."""
    columns = raw.column_names
    wanted = [c for c in (bench.image_column, bench.label_column, bench.name_column) if c]
    if columns is not None:
        missing = [c for c in wanted if c not in columns]
        if missing:
            raise InputError(
                f"{bench.name}: column(s) {missing} not found; the data has columns {columns}. The registry expects "
                f"{bench.hub_id}'s schema (image column {bench.image_column!r}, label column {bench.label_column!r})."
            )
    # Caltech-256's Hub copy numbers its classes from 1 beside a name column: its rows are labelled by that name.
    label_column = bench.name_column or bench.label_column
    data = raw.select_columns([bench.image_column, label_column])
    if bench.image_column != "image":
        data = data.rename_column(bench.image_column, "image")
    if label_column != "label":
        data = data.rename_column(label_column, "label")
    names, mapping = _label_mapping(data.features["label"] if data.features else None, bench)
    # Undecoded until checked: nothing below may decode (and die on) a corrupt image.
    data = _encode_labels(data.cast_column("image", ImageFeature(decode=False)), names, mapping, bench.name)
    if not decode:
        return data
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
            raise InputError(f"{name}: label(s) {bad[:5]} outside the {len(names)} classes.")
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


def rgb_images(data):
    """The dataset with its images read as 8-bit RGB (after `concatenate_datasets`, which drops the format)."""
    return data.with_transform(_rgb_rows)


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
            raise InputError(f"{bench.name}: {len(source_names)} source classes, expected {len(target)}.")
        return target, None
    unknown = [n for n in source_names if normalize_name(n) not in keys]
    if unknown:
        raise InputError(
            f"{bench.name}: class name(s) {unknown[:5]} of the data are not in the registry's list of "
            f"{len(target)} ({target[:3]}...). Is this the right dataset and revision?"
        )
    indices = [keys[normalize_name(n)] for n in source_names]
    if indices == list(range(len(target))):
        return target, None
    present = sorted(set(indices))  # e.g. Caltech101 without its background class
    position = {i: k for k, i in enumerate(present)}
    return [target[i] for i in present], {source: position[i] for source, i in enumerate(indices)}


def select_classes(data, names: list[str], absent_ok: bool = False):
    """The rows of a dataset in the common schema whose class is one of `names`, relabelled as `ClassLabel(names)`
    (in that order); the image column is not copied. A protocol without some class (the official PMG-AFT
    evaluation has no Caltech101 background) evaluates the others only; with `absent_ok`, `names` may also hold
    classes the data lacks, which the head keeps (CLIP_benchmark's 102-way Caltech101 over a copy without the
    background class)."""
    current = data.features["label"].names
    unknown = [n for n in names if n not in current]
    if unknown and not absent_ok:
        raise InputError(f"select_classes: {unknown[:3]} are not classes of the data ({current[:3]}...).")
    if list(names) == list(current):
        return data
    position = {n: i for i, n in enumerate(names)}
    mapping = {i: position[n] for i, n in enumerate(current) if n in position}
    if not mapping:
        raise InputError(
            f"select_classes: none of the data's classes ({current[:3]}...) is in the head ({list(names)[:3]}...); "
            "is this the right dataset for this benchmark?"
        )
    plain = data.with_format(None)
    kept = plain.filter(lambda labels: [label in mapping for label in labels], input_columns="label", batched=True)
    return _encode_labels(kept, list(names), mapping, "select_classes").with_transform(_rgb_rows)


def _map_label(label, mapping: dict, name: str) -> int:
    if "__by_name__" in mapping:
        key = normalize_name(label)
        if key not in mapping["__by_name__"]:
            raise InputError(f"{name}: label {label!r} is not one of the registry's class names.")
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
        raise InputError(f"on_bad_image={on_bad_image!r} is not one of {BAD_IMAGE_POLICIES}.")
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
        path = (data[bad[0]][image_column] or {}).get("path")  # an image folder's file, where the cell keeps it
        raise BadImageError(
            f"{name}: the image at index {bad[0]}{f' ({path})' if path else ''} cannot be decoded (corrupt or "
            f"truncated); {len(bad)} bad image(s) in all. Pass on_bad_image='skip' to drop them."
        )
    if bad:
        logger.warning("%s: skipped %d undecodable image(s), at indices %s.", name, len(bad), bad[:10])
        data = data.select([i for i, good in enumerate(ok) if good])
    return data.cast_column(image_column, ImageFeature())
