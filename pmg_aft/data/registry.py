"""The benchmark registry: Tiny-ImageNet, the 16 zero-shot evaluation sets of the TeCoA/PMG-AFT papers, and the
generated colour-patch set of the offline demo.

Each entry is data: where the Hub dataset lives (id, config, split, pinned revision and where the pin comes from),
which columns to read, the class names in label order and the texts each protocol puts in the prompts.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import NamedTuple

from ..constants import NAME_READINGS
from ..errors import InputError, UnknownNameError
from .generated import GENERATED

# Where benchmarks.json keeps each text source's class names and templates, first section first: a source's
# section, then the section it falls back to where it is the same (TGA-ZSR's files differ from PMG-AFT's for two
# datasets only); `""` is the entry's top level (CLIP_benchmark's names and templates). A new source is a new row.
SOURCE_SECTIONS = {
    "pmg_aft": ("pmg_aft",),
    "tga_zsr": ("tga_zsr", "pmg_aft"),
    "clip_benchmark": ("clip_benchmark", ""),
}
# The class texts a protocol can use.
TEXT_SOURCES = tuple(SOURCE_SECTIONS)


def _texts(entry: dict, sections: tuple[str, ...]) -> dict:
    """A source's texts of one entry: its first present section, over the top level for `""`."""
    present = [s for s in sections if s == "" or s in entry]
    first = present[0]
    if "" in present:  # the top level, with the source's own section over it
        base = {"names": entry["names"], "templates": entry["templates"]}
        return {**base, **(entry[first] if first else {})}
    return dict(entry[first])


@lru_cache(maxsize=1)
def _lists() -> dict:
    """benchmarks.json, each entry with `texts[source]` for every text source."""
    entries = json.loads(resources.files("pmg_aft.data").joinpath("benchmarks.json").read_text(encoding="utf-8"))
    for entry in entries.values():
        entry["texts"] = {source: _texts(entry, sections) for source, sections in SOURCE_SECTIONS.items()}
    return entries


class Head(NamedTuple):
    """A zero-shot head: its classes (registry names, label order), their class-name strings and the templates."""

    classes: list[str]
    texts: list[str]
    templates: list[str]


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: a Hub dataset split and how to read and prompt it.

    Attributes:
        name: the registry name (`cifar10`, `tiny-imagenet`, ...).
        hub_id: the Hub dataset id (`None` for the generated set).
        split: the evaluation split; `splits` maps other names (e.g. `train`) to Hub split names.
        image_column, label_column: the columns of the Hub dataset.
        name_column: a column holding each row's class name, for a dataset whose labels are plain integers
            (Caltech-256's Hub copy).
        config: the Hub configuration, if any.
        revision: the pinned Hub revision, where a public source pins one (`revision_source` says which); else
            `None`, and `pmg-aft datasets download` records the commit the benchmark resolves to, which later loads
            and reports use (`pinned_revision`).
        native_resolution: small images (CIFAR 32 px, STL-10 96 px), which protocols that attack at the native
            resolution keep at their size; the others are resized and centre-cropped first.
        match_labels_by_name: map the source's `ClassLabel` names onto ours by name (otherwise trust its order).
        gated: the Hub dataset needs accepted terms and a token.
        whole_set_splits: the splits that together are the whole dataset, which the official PMG-AFT and TGA-ZSR
            evaluations use (Caltech-256); protocols with `whole_sets` evaluate their union.
        training_split: the split the paper recipes train on (Tiny-ImageNet's `train`), fetched by `pmg-aft datasets
            download` beside the evaluation splits.
        official_difference: how the evaluated data differs from the official evaluation's, where it does (recorded
            with every result).
        card: the evidence for the Hub copy chosen, where the obvious one does not serve.
    """

    name: str
    hub_id: str | None
    split: str
    image_column: str = "image"
    label_column: str = "label"
    name_column: str | None = None
    config: str | None = None
    revision: str | None = None
    revision_source: str | None = None
    splits: dict[str, str] = field(default_factory=dict)
    native_resolution: bool = False
    match_labels_by_name: bool = True
    gated: bool = False
    whole_set_splits: tuple[str, ...] = ()
    training_split: str | None = None
    official_difference: str | None = None
    card: str | None = None

    @property
    def class_names(self) -> list[str]:
        """Class names in label order."""
        return list(_lists()[self.name]["names"])

    @property
    def aliases(self) -> list[str]:
        """Source-side names (Hub label names, folder names, WordNet ids) in the same order as `class_names`."""
        return list(_lists()[self.name].get("aliases", []))

    def head(self, source: str, reading: str = "cleaned") -> Head:
        """The zero-shot head a text source's evaluation builds for this dataset: its classes (registry names, in
        label order; a class that evaluation does not have is left out), their class-name strings and templates.

        Args:
            source (`str`): `"pmg_aft"`, the official PMG-AFT evaluation's strings, verbatim (its renaming rules,
                PCAM's sentences); `"tga_zsr"`, the official TGA-ZSR evaluation's (PMG-AFT's but where its dataset
                files differ); or `"clip_benchmark"`, CLIP_benchmark's names and template ensemble.
            reading (`str`): `"cleaned"`, or `"literal"` for the literal reading of an official loader that crashes
                as written, where one is recorded (Caltech-256's names keeping " 101"); other datasets have one.
        """
        if source not in TEXT_SOURCES:
            raise InputError(f"Unknown text source {source!r}; choose one of {TEXT_SOURCES}.")
        if reading not in NAME_READINGS:
            raise InputError(
                f"Unknown reading {reading!r} of the official class names; choose one of {NAME_READINGS}."
            )
        texts = _lists()[self.name]["texts"][source]
        names = texts["literal_names"] if reading == "literal" and "literal_names" in texts else texts["names"]
        kept = [(c, n) for c, n in zip(self.class_names, names) if n is not None]
        return Head([c for c, _ in kept], [n for _, n in kept], list(texts["templates"]))

    def hub_split(self, split: str | None) -> str:
        return self.split if split is None else self.splits.get(split, split)

    @property
    def hub_splits(self) -> list[str]:
        """Every Hub split a run may read: the evaluation split and its aliases, the whole set's, the training one."""
        training = {self.training_split} if self.training_split else set()
        return sorted({self.split, *self.splits.values(), *self.whole_set_splits} | training)


MTEB = "the mteb benchmark's task metadata"
_ENTRIES = [
    Benchmark("cifar10", "uoft-cs/cifar10", "test", "img", config="plain_text", native_resolution=True,
              revision="0b2714987fa478483af9968de7c934580d0bb9a2", revision_source=MTEB),
    Benchmark("cifar100", "uoft-cs/cifar100", "test", "img", "fine_label", config="cifar100", native_resolution=True,
              revision="aadb3af77e9048adbea6b47c21a81e47dd092ae5", revision_source=MTEB),
    Benchmark("stl10", "tanganke/stl10", "test", native_resolution=True,
              revision="49ae7f94508f7feae62baf836db284306eab0b0f", revision_source=MTEB),
    Benchmark("sun397", "tanganke/sun397", "test", official_difference=(
        "the official evaluation uses all 108,754 SUN397 images; tanganke/sun397 holds partition 1 (19,850 train + "
        "19,850 test images), of which the test split is evaluated")),
    Benchmark("food101", "ethz/food101", "validation", revision="e06acf2a88084f04bce4d4a525165d68e0a36c38",
              revision_source=MTEB),
    Benchmark("pets", "timm/oxford-iiit-pet", "test"),
    Benchmark("flowers102", "dpdl-benchmark/oxford_flowers102", "test"),
    Benchmark("dtd", "tanganke/dtd", "test", revision="d2afa97d9f335b1a6b3b09c637aef667f98f966e",
              revision_source=MTEB),
    Benchmark("eurosat", "tanganke/eurosat", "test", official_difference=(
        "the official evaluation uses all 27,000 EuroSAT images; tanganke/eurosat holds 21,600 train + 2,700 test "
        "images (plus corrupted copies), of which the test split is evaluated")),
    Benchmark("fgvc-aircraft", "mteb/FGVCAircraftZeroShot", "test", label_column="variant",
              revision="2d33d00400099b87bfec8b04f2876fb10ca07487", revision_source=MTEB),
    Benchmark("tiny-imagenet", "zh-plus/tiny-imagenet", "valid", splits={"test": "valid", "validation": "valid"},
              training_split="train",
              revision="5a77092c28e51558c5586e9c5eb71a7e17a5e43f", revision_source=MTEB),
    Benchmark("imagenet", "ILSVRC/imagenet-1k", "validation", match_labels_by_name=False, gated=True,
              revision="49e2ee26f3810fb5a7536bbf732a7b07389a47b5",
              revision_source="a public dataset-acquisition script that checks its 50,000 validation rows"),
    Benchmark("caltech101", "flwrlabs/caltech101", "train", card=(
        "flwrlabs/caltech101: one split of all 8,677 images, 101 lowercase folder names, no background class")),
    Benchmark("caltech256", "ilee0022/Caltech-256", "test", name_column="text",
              whole_set_splits=("train", "validation", "test"), card=(
                  "bitmind/caltech-256 has no label column; ilee0022/Caltech-256's card: 'This is the huggingface "
                  "format of : https://data.caltech.edu/records/nyy15-4j048', features image, label (int64), text "
                  "(string), splits train 24,791 / validation 2,755 / test 3,061 (30,607 with the clutter class)")),
    Benchmark("stanford-cars", "tanganke/stanford_cars", "test", revision="9abf6cf7d6dfa7b95152a0d6e791ea9435b47a40",
              revision_source="a public training script's pinned download"),
    Benchmark("pcam", "1aurent/PatchCamelyon", "test"),
]  # fmt: skip
# The generated colour patches (the demo's held-out set) as a toy benchmark: evaluation works offline end to end.
TOY = Benchmark(GENERATED, None, "test", native_resolution=True)
BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in [*_ENTRIES, TOY]}
ALIASES = {"cifar-10": "cifar10", "cifar-100": "cifar100", "stl-10": "stl10", "oxford-pets": "pets",
           "oxford-iiit-pet": "pets", "flowers": "flowers102", "fgvc_aircraft": "fgvc-aircraft",
           "aircraft": "fgvc-aircraft", "tiny_imagenet": "tiny-imagenet", "tinyimagenet": "tiny-imagenet",
           "imagenet-1k": "imagenet", "imagenet1k": "imagenet", "cars": "stanford-cars",
           "stanford_cars": "stanford-cars", "patchcamelyon": "pcam", "colour_patches": GENERATED,
           "color-patches": GENERATED}  # fmt: skip
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
    raise UnknownNameError(f"Unknown benchmark {name!r}.{hint} Valid benchmarks: {', '.join(BENCHMARKS)}.")
