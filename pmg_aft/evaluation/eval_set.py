"""`EvalSet`: a dataset to evaluate together with what decides its zero-shot head and its preprocessing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from datasets import concatenate_datasets

from ..constants import CUSTOM_PROTOCOL, DEFAULT_CROP_PCT, DEFAULT_TEMPLATE, INTERPOLATIONS
from ..data import (
    BENCHMARKS,
    SAMPLE_LISTS,
    ImageClassificationCollator,
    check_class_count,
    dataset_class_names,
    get_benchmark,
    load_benchmark,
    pinned_revision,
    prompt_class_names,
    rgb_images,
    robustbench_imagenet_files,
    rows_digest,
    select_classes,
    select_files,
    take_rows,
)
from ..domains import COUNT, SEED, UNIT_OPEN_LEFT, field
from ..errors import InputError
from ..parsing import check_fields
from ..prompts import check_template
from .protocols import Protocol, get_protocol


@dataclass(frozen=True)
class EvalSet:
    r"""A dataset to evaluate, carrying its class names, prompt templates, resolution and provenance.

    Build one with [`benchmark_eval_set`] for a registered benchmark (its protocol's prompts and resolution), or
    with [`EvalSet.from_dataset`] for any dataset with a `ClassLabel` column.

    Args:
        name (`str`): the name results are reported under.
        dataset (`datasets.Dataset`): rows with an image column and an integer label column.
        class_names (`list[str]`): the names put in the prompts, in label order.
        templates (`list[str]`): prompt templates with one `{}`; class embeddings are averaged over them.
        native_resolution (`bool`): attack at the images' own size (resized inside the classifier) instead of
            resizing and centre-cropping them to the model's size first.
        crop_pct (`float`): the centre crop's share of the resized image, applied otherwise.
        interpolation (`str`): the resize's interpolation.
        image_column (`str`): the dataset's image column.
        label_column (`str`): the dataset's label column.
        protocol (`str`): the protocol the texts come from (`pmg_aft`, `tga_zsr`, `clip_benchmark`, or `custom`).
        hub_id (`str`, *optional*): the Hub dataset the data comes from, recorded with the results.
        split (`str`, *optional*): its split.
        revision (`str`, *optional*): its commit.
        max_eval_samples (`int`, *optional*): the cap the data was cut to, recorded with the results so a report
            never calls a subset a full test set; `sample_seed` says how the rows were drawn (`None`: the first ones).
        official_difference (`str`, *optional*): how the data differs from the official evaluation's, if it does.
        sample_list (`str`, *optional*): the published list of samples the rows are (`robustbench`), if any.
        logit_scale (`str`, *optional*): `"model"` where this dataset's logits are scaled by the checkpoint's own
            exp(logit_scale) whatever the protocol's scale (FARE's ImageNet); `None`: the protocol's.
    """

    name: str
    dataset: Any
    class_names: list[str]
    templates: list[str] = field(default_factory=lambda: [DEFAULT_TEMPLATE])
    native_resolution: bool = False
    crop_pct: float = field(default=DEFAULT_CROP_PCT, domain=UNIT_OPEN_LEFT)
    interpolation: str = field(default="bilinear", metadata={"choices": list(INTERPOLATIONS)})
    image_column: str = "image"
    label_column: str = "label"
    protocol: str = CUSTOM_PROTOCOL
    hub_id: str | None = None
    split: str | None = None
    revision: str | None = None
    max_eval_samples: int | None = field(default=None, domain=COUNT)
    sample_seed: int | None = field(default=None, domain=SEED)
    official_difference: str | None = None
    sample_list: str | None = None
    logit_scale: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.templates, str):
            raise InputError(f"Eval set {self.name!r}: templates must be a list, got {self.templates!r}.")
        check_fields(self)
        check_class_count(self.class_names, f"Eval set {self.name!r}")
        for template in self.templates:
            check_template(template)

    def __len__(self) -> int:
        return len(self.dataset)

    @classmethod
    def from_dataset(
        cls,
        name: str,
        dataset,
        class_names: Sequence[str] | None = None,
        templates: Sequence[str] = (DEFAULT_TEMPLATE,),
        label_column: str = "label",
        **kwargs: Any,
    ) -> EvalSet:
        """An eval set over `dataset`'s own `ClassLabel` names (else `class_names`), WordNet ids mapped to ImageNet
        names and every name cleaned as the official code does. `kwargs` are the other fields."""
        names = dataset_class_names(dataset, label_column) or class_names
        if names is None:
            raise InputError(
                f"Eval set {name!r}: its '{label_column}' column is not a ClassLabel and no class_names were given; "
                f"pass class_names in label order. Its columns are {getattr(dataset, 'column_names', None)}."
            )
        names = prompt_class_names(names, f"Eval set {name!r}")
        return cls(name, dataset, names, list(templates), label_column=label_column, **kwargs)

    def take(self, max_eval_samples: int | None, sample_seed: int | None = None) -> EvalSet:
        """The same eval set on `max_eval_samples` rows (all of them for `None`): the first ones, or with
        `sample_seed` a seeded random sample kept in dataset order; the cap and the seed are recorded."""
        if max_eval_samples is None:
            return self
        return replace(self, dataset=take_rows(self.dataset, max_eval_samples, sample_seed),
                       max_eval_samples=max_eval_samples, sample_seed=sample_seed)  # fmt: skip

    def collator(self, image_size: int) -> ImageClassificationCollator:
        """The collator for a model whose input resolution is `image_size`."""
        return ImageClassificationCollator(
            self.image_column,
            self.label_column,
            image_size=image_size,
            native_resolution=self.native_resolution,
            interpolation=self.interpolation,
            crop_pct=self.crop_pct,
        )

    def provenance(self) -> dict:
        """What is recorded with every result: the data's origin, a digest of its rows, and the protocol of its
        prompts."""
        return {"hub_id": self.hub_id, "split": self.split, "revision": self.revision, "protocol": self.protocol,
                "templates": list(self.templates), "max_eval_samples": self.max_eval_samples,
                "sample_seed": self.sample_seed, "sample_list": self.sample_list,
                "official_difference": self.official_difference, "data_digest": self.digest()}  # fmt: skip

    def digest(self) -> str:
        """A short hash of what is evaluated: the row count, every label, the class texts, the preprocessing and the
        bytes of a few images (first, middle, last). A finished result is reused only for the same digest, so another
        folder, split or dataset under the same name is evaluated afresh. (For data other than a `datasets.Dataset`,
        only the sampled rows' labels are read, so as not to load every image.) Computed once per eval set."""
        if "_digest" not in self.__dict__:  # frozen: cached beside the fields, as functools.cached_property does
            self.__dict__["_digest"] = self._compute_digest()
        return self.__dict__["_digest"]

    def _compute_digest(self) -> str:
        facts = [rows_digest(self.dataset, self.image_column, self.label_column), self.class_names, self.templates,
                 self.native_resolution, self.crop_pct, self.interpolation, self.revision]  # fmt: skip
        return hashlib.sha256(json.dumps(facts, default=str).encode()).hexdigest()[:16]


def benchmark_eval_set(
    name: str,
    protocol: str | Protocol = "pmg_aft",
    *,
    benchmark_data_dir: str | None = None,
    max_eval_samples: int | None = None,
    on_bad_image: str = "raise",
    dataset=None,
) -> EvalSet:
    """A registered benchmark as an eval set, with its protocol's class texts and preprocessing.

    Args:
        name (`str`): a registry name (`pmg-aft datasets list`).
        protocol (`str` or [`Protocol`]): `"pmg_aft"` (the official PMG-AFT texts, small images at native size),
            `"tga_zsr"` (TGA-ZSR's texts, every image resized to 224) or `"clip_benchmark"` (template ensembles;
            ImageNet: RobustBench's 5,000 images).
        benchmark_data_dir (`str`, *optional*): a folder of local copies, one sub-folder per benchmark; default: the
            Hub at the pinned revision.
        max_eval_samples (`int`, *optional*): N test samples: a random sample drawn with the protocol's
            `sample_seed` (kept in dataset order), or the first N where the protocol has no seed.
        on_bad_image (`str`): `"raise"` or `"skip"` undecodable images.
        dataset (`datasets.Dataset`, *optional*): already loaded in the common schema (`load_benchmark`); then
            nothing is loaded and no revision is claimed.

    The head is the protocol's evaluation's: classes it does not have (Caltech101's background under `pmg_aft`) are
    left out with their rows, and classes it has stay in the head even where the data lacks them.
    """
    record = get_protocol(protocol)
    bench = get_benchmark(name)
    revision, split = None, bench.split
    sample_list = "robustbench" if bench.name == "imagenet" and record.imagenet_samples == "robustbench" else None
    if sample_list is not None:  # the listed rows; a cap only where the caller overrode the protocol's
        capped = "max_eval_samples" in record.overridden
        max_eval_samples = max_eval_samples if capped else None
    if dataset is None:
        cap = None if sample_list else max_eval_samples
        dataset, split, revision = _load(bench, record, benchmark_data_dir, cap, on_bad_image)
    if sample_list is not None:
        dataset = select_files(dataset, robustbench_imagenet_files(), bench.name, SAMPLE_LISTS[sample_list])
    # The protocol's head: its classes in label order (rows of other classes dropped, absent ones kept).
    head = bench.head(record.texts, record.caltech256_names)
    dataset = select_classes(dataset, head.classes, absent_ok=True)
    small = bench.native_resolution
    eval_set = EvalSet(
        bench.name,
        dataset,
        head.texts,
        head.templates,
        native_resolution=small and record.native_resolution,
        # Small images a protocol does not keep native go straight to the model's size (TGA-ZSR's Resize(224)).
        crop_pct=1.0 if small else record.crop_pct,
        interpolation=record.interpolation,
        protocol=record.name,
        hub_id=bench.hub_id,
        split=split,
        revision=revision,
        official_difference=bench.official_difference,
        sample_list=sample_list,
        logit_scale="model" if bench.name == "imagenet" and record.imagenet_logit_scale == "model" else None,
    )
    # A single split is cut already (this records it); a sample list is cut to its first rows.
    return eval_set.take(max_eval_samples, None if sample_list else record.sample_seed)


def _load(bench, record: Protocol, benchmark_data_dir, max_eval_samples, on_bad_image):
    """A benchmark's evaluated data under `record` (the union of its splits where the protocol takes the whole set),
    with the split it names and the revision it claims (none for a local copy)."""
    splits = list(bench.whole_set_splits) if record.whole_sets and bench.whole_set_splits else [None]
    cap = None if len(splits) > 1 else max_eval_samples  # a union is sampled by the caller, once whole
    parts = [
        load_benchmark(bench.name, part, benchmark_data_dir=benchmark_data_dir, max_samples=cap,
                       on_bad_image=on_bad_image, sample_seed=record.sample_seed)
        for part in splits
    ]  # fmt: skip
    dataset = parts[0] if len(parts) == 1 else rgb_images(concatenate_datasets(parts))
    split = "+".join(splits) if len(splits) > 1 else bench.split
    revision = None if benchmark_data_dir or bench.hub_id is None else pinned_revision(bench.name)
    return dataset, split, revision


def as_eval_set(name: str, data, protocol: str | Protocol = "pmg_aft", **defaults: Any) -> EvalSet:
    """`data` as an eval set named `name`.

    An `EvalSet` is returned as it is. A dataset keyed by a registered benchmark's name, in the common schema that
    [`load_benchmark`] returns (an `image` column and a `label` `ClassLabel` with that benchmark's names, or some of
    them), gets the benchmark's texts and preprocessing under `protocol`; any other dataset (a Hub copy in its own
    schema too) its own `ClassLabel` names and `defaults` ([`EvalSet.from_dataset`]).
    """
    if isinstance(data, EvalSet):
        return data
    bench = BENCHMARKS.get(name)
    common = bench is not None and "image" in (getattr(data, "column_names", None) or [])
    names = dataset_class_names(data, "label") if common else None
    if names is not None and set(names) <= set(bench.class_names):
        return benchmark_eval_set(name, protocol, dataset=data)
    return EvalSet.from_dataset(name, data, **defaults)
