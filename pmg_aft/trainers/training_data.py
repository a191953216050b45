"""A trainer's data, checked before any compute is spent (the datasets' columns and labels, the training class names),
and what the `Trainer` reads (the collator, or the decode-once path, [`DecodedImages`])."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from datasets import Image as ImageFeature
from datasets import IterableDataset

from ..data import (
    DecodedCollator,
    DecodedImages,
    ImageClassificationCollator,
    check_class_count,
    check_dataset,
    check_label_order,
    check_labels,
    dataset_class_names,
    prompt_class_names,
)
from ..data.streaming import EncodedImagesCollator, StreamingImages
from ..errors import InputError
from .base_config import RobustCLIPConfig


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
    own = dataset_class_names(train_dataset, args.label_column) if train_dataset is not None else None
    if own is not None and len(own) != len(class_names):
        raise InputError(
            f"{len(class_names)} class names were given but the training set's '{args.label_column}' ClassLabel has "
            f"{len(own)} classes: give one name per class, in label order."
        )
    if own is not None:
        check_label_order(class_names, own, "the training class names")
    names = prompt_class_names(class_names, "The training class names")
    if args.uses_labels:
        check_class_count(names, "The training set")
    return names


def check_training_data(args: RobustCLIPConfig, train_dataset, eval_dataset, class_names) -> list[str] | None:
    """Check the datasets' columns and labels before anything else runs; return the training class names, cleaned
    for the prompt, in label order (`None` for a method without labels and none given)."""
    columns = (args.image_column, args.label_column) if args.uses_labels else (args.image_column,)
    check_dataset(train_dataset, "train_dataset", columns)
    check_dataset(eval_dataset, "eval_dataset")
    names = training_class_names(args, train_dataset, class_names)
    if train_dataset is not None and names is not None and not isinstance(train_dataset, IterableDataset):
        check_labels(train_dataset, "train_dataset", args.label_column, len(names))
    return names


def training_inputs(args: RobustCLIPConfig, train_dataset, data_collator: Callable | None, image_size: int):
    """The train set and collator the `Trainer` reads.

    The train set: a stream ([`StreamingImages`]) for a `datasets.IterableDataset`; with `preprocess_on_device` every
    image decoded once into memory ([`DecodedImages`]). The collator: encoded bytes for `decode_on_device`
    ([`EncodedImagesCollator`]), else the host collator ([`ImageClassificationCollator`]).
    """
    label_column = args.label_column if args.uses_labels else None
    if isinstance(train_dataset, IterableDataset):
        if args.preprocess_on_device:
            raise InputError(
                "preprocess_on_device decodes every training image once into memory, which a stream cannot do: use "
                "decode_on_device (JPEG bytes decoded on the accelerator at each step) or the host path."
            )
        if args.max_steps <= 0:
            raise InputError(
                "A streaming training set has no length, so epochs cannot be counted: set max_steps (ImageNet-1k's "
                "1,281,167 images are 10,009 steps per epoch at a global batch of 128)."
            )
        if args.image_column in (train_dataset.column_names or []):
            train_dataset = train_dataset.cast_column(args.image_column, ImageFeature(decode=False))
        seed = args.data_seed if args.data_seed is not None else args.seed
        train_dataset = StreamingImages(train_dataset, seed=seed, buffer_size=args.shuffle_buffer_size,
                                        rank=args.process_index, world_size=args.world_size)  # fmt: skip
    elif args.decode_on_device and train_dataset is not None:  # the images' bytes, not decoded pixels
        train_dataset = train_dataset.with_format(None).cast_column(args.image_column, ImageFeature(decode=False))
    if args.decode_on_device:
        data_collator = data_collator or EncodedImagesCollator(args.image_column, label_column)
    if args.preprocess_on_device and train_dataset is not None:
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
    return train_dataset, data_collator
