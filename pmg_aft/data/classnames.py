"""Class names: ImageNet WordNet ids to names, and names read from a dataset's `ClassLabel` feature."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources

from ..errors import InputError
from ..prompts import clean_class_name

WNID_PATTERN = re.compile(r"^n\d{8}$")


@lru_cache(maxsize=1)
def imagenet_wnid_to_name() -> dict[str, str]:
    """`{wnid: name}` for the 1000 ImageNet classes (the devkit's short names, e.g. `n02119789 -> kit_fox`)."""
    text = resources.files("pmg_aft.data").joinpath("imagenet_wnid_names.txt").read_text(encoding="utf-8")
    table = {}
    for line in text.splitlines():
        if line.strip():
            wnid, _, name = line.split(maxsplit=2)
            table[wnid] = name.strip()
    return table


def resolve_class_names(names: Sequence[str]) -> list[str]:
    """Return human-readable class names: WordNet ids (Tiny-ImageNet's labels) are mapped to ImageNet names.

    Raises:
        ValueError: if the list is empty or has WordNet ids that are not ImageNet classes.
    """
    names = [str(n) for n in names]
    if not names:
        raise InputError("The class-name list is empty.")
    if all(WNID_PATTERN.match(n) for n in names):
        table = imagenet_wnid_to_name()
        unknown = [n for n in names if n not in table]
        if unknown:
            raise InputError(f"WordNet ids not in the ImageNet table: {unknown[:5]}; pass class_names explicitly.")
        return [table[n] for n in names]
    return names


def prompt_class_names(names: Sequence[str], where: str) -> list[str]:
    """The texts a zero-shot head puts in its prompts for `names` (in label order): WordNet ids mapped to ImageNet
    names, then each cleaned as the official code does ([`clean_class_name`]).

    Raises:
        [`InputError`]: naming the pair, for two names that are the same text after cleaning (`Red` and `red`, `a_b`
            and `a b`: the head could not tell those classes apart), and for a blank name.
    """
    resolved = resolve_class_names(names)
    cleaned = [clean_class_name(n) for n in resolved]
    first: dict[str, int] = {}
    for index, (raw, text) in enumerate(zip(resolved, cleaned)):
        if not text:
            raise InputError(f"{where}: class {index} has a blank name ({raw!r}); every class needs a name for its "
                             "prompt.")  # fmt: skip
        if text in first:
            other = first[text]
            raise InputError(
                f"{where}: classes {other} ({resolved[other]!r}) and {index} ({raw!r}) are the same prompt text "
                f"after cleaning ({text!r}), so the zero-shot head cannot tell them apart: give them distinct names."
            )
        first[text] = index
    return cleaned


def dataset_class_names(dataset, label_column: str = "label") -> list[str] | None:
    """Class names from a `datasets` dataset's `ClassLabel` feature, or `None` if the column has no names."""
    features = getattr(dataset, "features", None)
    if not features or label_column not in features:
        return None
    names = getattr(features[label_column], "names", None)
    return list(names) if names else None


def check_label_order(given: Sequence[str], own: Sequence[str], where: str) -> None:
    """Raise [`InputError`] when `given` names a dataset's classes are its own `ClassLabel` names in another order:
    every label would be named wrongly (an image folder's labels are its class folders in sorted order)."""
    key = [clean_class_name(n).lower() for n in given]
    theirs = [clean_class_name(n).lower() for n in own]
    if key != theirs and sorted(key) == sorted(theirs):
        index = next(i for i, (a, b) in enumerate(zip(key, theirs)) if a != b)
        raise InputError(
            f"{where}: these are the data's own ClassLabel names in another order (label {index} is "
            f"{own[index]!r} in the data but {given[index]!r} here), so every label would be named wrongly; give them "
            f"in label order ({', '.join(map(repr, own[:6]))}{', ...' if len(own) > 6 else ''}) or leave them out."
        )
