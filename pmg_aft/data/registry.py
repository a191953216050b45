"""The benchmark registry: Tiny-ImageNet and the 16 zero-shot evaluation sets of the TeCoA/PMG-AFT protocol.

Each entry is data: where the Hub dataset lives, which split and columns to read, the class names in label order,
the prompts of each protocol and whether the attack runs at the dataset's native resolution.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from ..constants import DEFAULT_TEMPLATE, PROTOCOLS
from ..prompts import clean_class_name


@lru_cache(maxsize=1)
def _lists() -> dict:
    return json.loads(resources.files("pmg_aft.data").joinpath("benchmarks.json").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: a Hub dataset split and how to read and prompt it.

    Attributes:
        name: the registry name (`cifar10`, `tiny-imagenet`, ...).
        hub_id: the Hub dataset id.
        config: the Hub configuration, if any.
        revision: the pinned Hub revision. `None` in this release (the commits could not be looked up where it was
            built): `pmg-aft datasets download` records the commit each benchmark resolves to, and later loads and
            reports use that one (`pinned_revision`).
        split: the evaluation split; `splits` maps other names (e.g. `train`) to Hub split names.
        image_column, label_column: the columns of the Hub dataset.
        paper_templates: the official per-dataset prompt(s) of the TeCoA/PMG-AFT protocol.
        native_resolution: attack at the dataset's resolution (CIFAR 32 px, STL-10 96 px), resizing inside the
            classifier; otherwise images are resized (shorter side 256) and centre-cropped to 224 first.
        match_labels_by_name: map the source's `ClassLabel` names onto ours by name (otherwise trust its order).
        paper_names: class names for the paper protocol when they differ from the registry's (PCAM's sentences).
    """

    name: str
    hub_id: str
    split: str
    image_column: str = "image"
    label_column: str = "label"
    config: str | None = None
    revision: str | None = None
    splits: dict[str, str] = field(default_factory=dict)
    paper_templates: tuple[str, ...] = (DEFAULT_TEMPLATE,)
    paper_names: tuple[str, ...] | None = None
    native_resolution: bool = False
    match_labels_by_name: bool = True
    gated: bool = False

    @property
    def class_names(self) -> list[str]:
        """Class names in label order (empty for Caltech-256, whose names come from the dataset itself)."""
        return list(_lists()[self.name]["names"])

    @property
    def aliases(self) -> list[str]:
        """Source-side names (folder names, WordNet ids) in the same order as `class_names`, if any."""
        return list(_lists()[self.name].get("aliases", []))

    def names(self, protocol: str = "paper") -> list[str]:
        """The class names used in the prompts of `protocol`."""
        check_protocol(protocol)
        if protocol == "paper" and self.paper_names is not None:
            return list(self.paper_names)
        return self.class_names

    def prompt_names(self, names: list[str], protocol: str = "paper") -> list[str]:
        """The names to put in the prompts for a dataset labelled with `names` (all or some of `class_names`).

        The paper protocol uses its own names where it has them (PCAM's sentences) and cleans them as the official
        code does (lower case, `_ - /` as spaces); CLIP_benchmark uses its names as they are.
        """
        check_protocol(protocol)
        if protocol == "paper" and self.paper_names is not None:
            index = {n: i for i, n in enumerate(self.class_names)}
            names = [self.paper_names[index[n]] for n in names]
        return [clean_class_name(n) for n in names] if protocol == "paper" else list(names)

    def templates(self, protocol: str = "paper") -> list[str]:
        """Prompt templates of `protocol`: the official single prompt, or CLIP_benchmark's ensemble."""
        check_protocol(protocol)
        return list(self.paper_templates) if protocol == "paper" else list(_lists()[self.name]["templates"])

    def hub_split(self, split: str | None) -> str:
        return self.split if split is None else self.splits.get(split, split)


def check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown protocol {protocol!r}; choose one of {PROTOCOLS}.")


_ENTRIES = [
    Benchmark("cifar10", "uoft-cs/cifar10", "test", "img", config="plain_text", native_resolution=True),
    Benchmark("cifar100", "uoft-cs/cifar100", "test", "img", "fine_label", config="cifar100", native_resolution=True),
    Benchmark("stl10", "tanganke/stl10", "test", native_resolution=True),
    Benchmark("sun397", "tanganke/sun397", "test"),
    Benchmark("food101", "ethz/food101", "validation", paper_templates=("A photo of {}, a type of food.",)),
    Benchmark("pets", "timm/oxford-iiit-pet", "test", paper_templates=("A photo of a {}, a type of pet.",)),
    Benchmark(
        "flowers102",
        "dpdl-benchmark/oxford_flowers102",
        "test",
        paper_templates=("A photo of a {}, a type of flower.",),
    ),
    Benchmark("dtd", "tanganke/dtd", "test", paper_templates=("A surface with a {} texture.",)),
    Benchmark("eurosat", "tanganke/eurosat", "test", paper_templates=("A centered satellite photo of {}.",)),
    Benchmark(
        "fgvc-aircraft",
        "mteb/FGVCAircraftZeroShot",
        "test",
        label_column="variant",
        paper_templates=("A photo of a {}, a type of aircraft.",),
    ),
    Benchmark("tiny-imagenet", "zh-plus/tiny-imagenet", "valid", splits={"test": "valid", "validation": "valid"}),
    Benchmark("imagenet", "ILSVRC/imagenet-1k", "validation", match_labels_by_name=False, gated=True),
    Benchmark("caltech101", "flwrlabs/caltech101", "train", paper_templates=("A photo of a {}.",)),
    Benchmark("caltech256", "bitmind/caltech-256", "train", paper_templates=("A photo of a {}.",)),
    Benchmark("stanford-cars", "tanganke/stanford_cars", "test", paper_templates=("A photo of a {}.",)),
    Benchmark(
        "pcam",
        "1aurent/PatchCamelyon",
        "test",
        paper_templates=("This is a photo of {}",),
        paper_names=("healthy lymph node tissue", "lymph node tumor tissue"),
    ),
]
BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in _ENTRIES}
ALIASES = {"cifar-10": "cifar10", "cifar-100": "cifar100", "stl-10": "stl10", "oxford-pets": "pets",
           "oxford-iiit-pet": "pets", "flowers": "flowers102", "fgvc_aircraft": "fgvc-aircraft",
           "aircraft": "fgvc-aircraft", "tiny_imagenet": "tiny-imagenet", "tinyimagenet": "tiny-imagenet",
           "imagenet-1k": "imagenet", "imagenet1k": "imagenet", "cars": "stanford-cars",
           "stanford_cars": "stanford-cars", "patchcamelyon": "pcam"}  # fmt: skip
EVAL_SUITE = [b.name for b in _ENTRIES]  # the 16 evaluation sets (Tiny-ImageNet's valid split among them)


def revisions_file() -> str:
    """Where `pmg-aft datasets download` records the commit each benchmark resolved to (`PMG_AFT_REVISIONS`)."""
    default = os.path.join(os.path.expanduser("~"), ".cache", "pmg_aft", "revisions.json")
    return os.environ.get("PMG_AFT_REVISIONS", default)


def pinned_revision(name: str) -> str | None:
    """The revision to load: the registry's pin, else the commit recorded at download, else `None` (latest)."""
    bench = get_benchmark(name)
    if bench.revision:
        return bench.revision
    if os.path.exists(revisions_file()):
        with open(revisions_file(), encoding="utf-8") as f:
            return json.load(f).get(bench.name)
    return None


def get_benchmark(name: str) -> Benchmark:
    """Look a benchmark up by name (case-insensitive, common aliases accepted).

    Raises:
        KeyError: naming the valid benchmarks and the closest match.
    """
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key in BENCHMARKS:
        return BENCHMARKS[key]
    close = difflib.get_close_matches(key, list(BENCHMARKS) + list(ALIASES), n=1, cutoff=0.5)
    hint = f" Did you mean {ALIASES.get(close[0], close[0])!r}?" if close else ""
    raise KeyError(f"Unknown benchmark {name!r}.{hint} Valid benchmarks: {', '.join(BENCHMARKS)}.")
