"""Checks a dataset must pass before training or evaluation starts: its columns, its size and its labels."""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InputError


def check_dataset(dataset, name: str, columns: Sequence[str] | None = None) -> None:
    """Raise on an empty dataset or missing columns, naming the columns found.

    Args:
        dataset (`datasets.Dataset`, `dict` of them, or `None`): `None` passes.
        name (`str`): how the error names the dataset (`train_dataset`, `eval_dataset['cifar10']`).
        columns (`Sequence[str]`, *optional*): columns that must exist.
    """
    if dataset is None:
        return
    if isinstance(dataset, dict):
        for key, value in dataset.items():
            check_dataset(value, f"{name}[{key!r}]", columns)
        return
    found = getattr(dataset, "column_names", None)
    if found is not None and columns is not None:
        missing = [c for c in columns if c not in found]
        if missing:
            raise InputError(
                f"{name} has no column(s) {missing}; its columns are {list(found)}. "
                "Set image_column / label_column in the config (or --image_column / --label_column)."
            )
    if hasattr(dataset, "__len__") and len(dataset) == 0:
        raise InputError(f"{name} is empty (0 rows); check the split name and any filtering or max_samples.")


def check_labels(dataset, name: str, label_column: str, num_classes: int) -> None:
    """Raise unless a `datasets.Dataset`'s labels are whole numbers in `[0, num_classes)`, and warn if they are all
    one class.

    Text labels (class names) and fractional numbers are refused, naming the value and the fix: the collator would
    otherwise fail at the first step or truncate `1.7` to class 1.
    """
    if not hasattr(dataset, "with_format") or label_column not in (getattr(dataset, "column_names", None) or []):
        return
    # Through the "arrow" format, so filter/shuffle/select index mappings are respected.
    column = dataset.with_format("arrow")[label_column]
    if len(column) == 0:
        return  # check_dataset names an empty dataset
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        raise InputError(
            f"{name}'s '{label_column}' column holds text ({column[0].as_py()!r}, ...), not class indices. Map it to "
            f"integers in the order of the class names, e.g. dataset.class_encode_column('{label_column}') (its "
            "ClassLabel names then become the class names)."
        )
    if pa.types.is_floating(column.type):
        fractional = pc.not_equal(column, pc.floor(column))
        if pc.any(fractional).as_py():
            index = pc.index(fractional, True).as_py()
            raise InputError(
                f"{name}'s '{label_column}' column holds fractional labels "
                f"({column[index].as_py()} at index {index}); "
                "labels must be integer class indices."
            )
    elif not pa.types.is_integer(column.type):
        return
    bounds = pc.min_max(column).as_py()
    if bounds["min"] is not None and (bounds["min"] < 0 or bounds["max"] >= num_classes):
        raise InputError(
            f"{name} has labels in [{bounds['min']}, {bounds['max']}] but {num_classes} class names; "
            "labels must be in [0, num_classes). Check class_names or the label column."
        )
    if bounds["min"] is not None and bounds["min"] == bounds["max"] and len(column) > 1:
        warnings.warn(
            f"{name}: every one of its {len(column)} rows has label {bounds['min']}; a classifier trained on one "
            "class learns nothing about the others (and scores 100% on data of that class alone).",
            stacklevel=3,
        )


def check_class_count(class_names: Sequence[str], name: str) -> None:
    """Raise for fewer than two classes: a zero-shot classifier over one class is always right."""
    if len(class_names) < 2:
        raise InputError(
            f"{name} has {len(class_names)} class name(s) ({list(class_names)}); zero-shot classification needs at "
            "least 2, else every prediction is right by construction. Check class_names or the label column."
        )


def rows_digest(data, image_column: str = "image", label_column: str = "label") -> str:
    """A short hash of a dataset's rows as far as it can be read cheaply: the row count, every label and the bytes of
    a few images (first, middle, last). Other data under the same name or path gets another digest. (For data other
    than a `datasets.Dataset`, only the sampled rows' labels are read, so as not to load every image.)"""
    digest = hashlib.sha256()
    rows = sorted({0, len(data) // 2, len(data) - 1}) if len(data) else []
    if hasattr(data, "with_format"):
        labels = data.with_format("arrow")[label_column].to_pylist() if label_column in data.column_names else []
    else:
        labels = [data[i].get(label_column) for i in rows]
    digest.update(json.dumps([len(data), labels], default=str).encode())
    for index in rows:
        digest.update(_image_bytes(data[index].get(image_column)))
    return digest.hexdigest()[:16]


def _image_bytes(image) -> bytes:
    """The content of one image as a dataset row holds it: a PIL image, a `{"bytes", "path"}` dict or an array."""
    if hasattr(image, "tobytes"):  # PIL images, numpy arrays
        return image.tobytes()
    if isinstance(image, dict):
        return image.get("bytes") or str(image.get("path")).encode()
    if hasattr(image, "numpy"):  # tensors
        return image.numpy().tobytes()
    return repr(image).encode()
