"""A trainer's data, checked before any compute is spent: the datasets' columns and labels, the training class
names, and the collator (or the decode-once path, [`DecodedImages`])."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..data import (
    DecodedCollator,
    DecodedImages,
    ImageClassificationCollator,
    check_class_count,
    check_dataset,
    check_labels,
    dataset_class_names,
    resolve_class_names,
)
from ..errors import InputError
from ..prompts import clean_class_name
from .base_config import RobustCLIPConfig


@dataclass
class TrainingData:
    """What a trainer trains on: the (checked, possibly decoded) train set, its cleaned class names in label order
    (`None` for a method without labels and none given), the collator, and the Hub id the set came from."""

    train_dataset: object
    class_names: list[str] | None
    data_collator: Callable
    dataset_id: str | None


def training_class_names(args: RobustCLIPConfig, train_dataset, class_names: Sequence[str] | None) -> list[str] | None:
    """The training classes, cleaned for the prompt: `class_names`, else the train set's `ClassLabel` names (WordNet
    ids mapped to ImageNet names)."""
    if class_names is None and train_dataset is not None and args.uses_labels:
        class_names = dataset_class_names(train_dataset, args.label_column)
        if class_names is None:
            raise InputError(
                f"Cannot find class names: train_dataset's '{args.label_column}' column is not a ClassLabel. "
                "Pass class_names=[...] in label order."
            )
    if not class_names:
        return None
    names = [clean_class_name(n) for n in resolve_class_names(class_names)]
    if args.uses_labels:
        check_class_count(names, "The training set")
    return names


def prepare_training_data(
    args: RobustCLIPConfig,
    train_dataset,
    eval_dataset,
    class_names: Sequence[str] | None,
    data_collator: Callable | None,
    image_size: int,
) -> TrainingData:
    """Check the datasets and build what the trainer needs from them (see [`TrainingData`])."""
    columns = (args.image_column, args.label_column) if args.uses_labels else (args.image_column,)
    check_dataset(train_dataset, "train_dataset", columns)
    check_dataset(eval_dataset, "eval_dataset")
    names = training_class_names(args, train_dataset, class_names)
    if train_dataset is not None and names is not None:
        check_labels(train_dataset, "train_dataset", args.label_column, len(names))
    dataset_id = getattr(getattr(train_dataset, "info", None), "dataset_name", None)
    if args.preprocess_on_device and train_dataset is not None:
        label_column = args.label_column if args.uses_labels else None
        train_dataset = DecodedImages(train_dataset, args.image_column, label_column, name="train_dataset")
        data_collator = data_collator or DecodedCollator()
    if data_collator is None:
        data_collator = ImageClassificationCollator(
            args.image_column,
            args.label_column,
            image_size=image_size,
            native_resolution=args.native_resolution,
            interpolation=args.interpolation,
            require_labels=args.uses_labels,
            crop_pct=args.crop_pct,
        )
    return TrainingData(train_dataset, names, data_collator, dataset_id)
