"""What a trainer writes and publishes: safetensors checkpoints with their processor, training arguments (JSON) and
`pmg_aft.json`, the recipe a model card shows, the card itself, and uploads that never carry a pickle."""

from __future__ import annotations

import json
import os
from dataclasses import fields

from huggingface_hub import ModelCard
from transformers import TrainingArguments

from ..cards import build_model_card
from ..constants import RUN_INFO_FILE
from ..evaluation import Report
from ..methods import MethodInfo
from .base_config import PIXEL_FIELDS, RobustCLIPConfig

# Optimisation settings a model card's recipe table shows beside the method's own fields.
RECIPE_KEYS = ("optim", "optim_args", "learning_rate", "weight_decay", "lr_scheduler_type", "warmup_steps",
               "num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
               "max_grad_norm", "bf16", "fp16", "seed")  # fmt: skip
DATA_PLUMBING = ("image_column", "label_column")


def recipe_of(config_class: type[RobustCLIPConfig], values: dict) -> dict:
    """The settings a model card shows for a run with these argument `values` (a config's JSON): the method's own
    fields, the shared attack/head/data fields, then the optimisation, without the fields the method does not use;
    pixel quantities as fractions of 255."""
    exclude = (*DATA_PLUMBING, *config_class.unused_fields())
    inherited = {f.name for f in fields(TrainingArguments)}
    shared = [f.name for f in fields(RobustCLIPConfig) if f.name not in inherited]
    method = [f.name for f in fields(config_class) if f.name not in inherited and f.name not in shared]
    keys = [k for k in method + shared + list(RECIPE_KEYS) if k not in exclude]
    linf = values.get("attack_norm", "linf") == "linf"
    return {k: (f"{values[k] * 255:g}/255" if k in PIXEL_FIELDS and linf else values[k]) for k in keys if k in values}


def save_checkpoint(output_dir: str, model, processor, args: RobustCLIPConfig, info: dict, state_dict=None) -> None:
    """Save the full `CLIPModel` (safetensors), its processor, the training arguments as JSON (no pickle) and `info`
    as `pmg_aft.json`: what the model card needs that the checkpoint cannot say (the method, recipe, base model,
    training data and class names; transformers does not save `_name_or_path`)."""
    os.makedirs(output_dir, exist_ok=True)
    model.save_pretrained(output_dir, state_dict=state_dict, is_main_process=True)
    processor.save_pretrained(output_dir)
    with open(os.path.join(output_dir, "training_args.json"), "w", encoding="utf-8") as f:
        f.write(args.to_json_string())
    with open(os.path.join(output_dir, RUN_INFO_FILE), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)


def trainer_card(
    repo_id: str,
    report: Report | None,
    method: MethodInfo,
    recipe: dict,
    base_model: str | None,
    dataset: str | list[str] | None,
    license: str | None,
) -> ModelCard:
    """The card of a run's checkpoint: the method and its paper, usage, the recipe, and the last evaluation's clean
    and robust accuracy in the `model-index`. `dataset` may be the list `Trainer.push_to_hub` passes on."""
    dataset = dataset[0] if isinstance(dataset, (list, tuple)) and dataset else dataset
    return build_model_card(repo_id, report, base_model, recipe, dataset or None, license=license or "mit",
                            method=method)  # fmt: skip
