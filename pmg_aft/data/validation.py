"""Checks a dataset must pass before training or evaluation starts: its columns, its size and its labels."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc


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
            raise ValueError(
                f"{name} has no column(s) {missing}; its columns are {list(found)}. "
                "Set image_column / label_column in the config (or --image_column / --label_column)."
            )
    if hasattr(dataset, "__len__") and len(dataset) == 0:
        raise ValueError(f"{name} is empty (0 rows); check the split name and any filtering or max_samples.")


def check_labels(dataset, name: str, label_column: str, num_classes: int) -> None:
    """Raise if a `datasets.Dataset` has integer labels outside `[0, num_classes)`."""
    if not hasattr(dataset, "with_format") or label_column not in (getattr(dataset, "column_names", None) or []):
        return
    # Through the "arrow" format, so filter/shuffle/select index mappings are respected.
    column = dataset.with_format("arrow")[label_column]
    if not pa.types.is_integer(column.type):
        return
    bounds = pc.min_max(column).as_py()
    if bounds["min"] is not None and (bounds["min"] < 0 or bounds["max"] >= num_classes):
        raise ValueError(
            f"{name} has labels in [{bounds['min']}, {bounds['max']}] but {num_classes} class names; "
            "labels must be in [0, num_classes). Check class_names or the label column."
        )
