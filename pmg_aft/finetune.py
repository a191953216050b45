"""The fine-tuning job behind `examples/finetune.py` and `pmg-aft train`.

Any field of the three argument groups (`ModelArguments`, `DataArguments`, `PMGAFTConfig`) can be given on the
command line, where it overrides the `--config` YAML/JSON file.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field

import yaml
from transformers import CLIPModel, CLIPProcessor, HfArgumentParser, set_seed
from transformers.trainer_utils import get_last_checkpoint

from .config import PMGAFTConfig
from .data import check_images, load_image_dataset
from .data.loading import GENERATED
from .trainer import PMGAFTTrainer

logger = logging.getLogger(__name__)
TINY = "tiny"


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        default=TINY,
        metadata={
            "help": "Hub id or local path of a CLIPModel (e.g. openai/clip-vit-base-patch32), or `tiny` for "
            "the embedded tiny CLIP, contrastively pre-trained for a few seconds on generated images."
        },
    )
    model_revision: str = field(default="main", metadata={"help": "Hub revision of the model (a commit sha pins it)."})


@dataclass
class DataArguments:
    dataset_name: str = field(
        default="colour-patches",
        metadata={
            "help": "Hub dataset id (e.g. zh-plus/tiny-imagenet), a local save_to_disk / parquet / image "
            "folder, or `colour-patches` (generated offline)."
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration."})
    dataset_revision: str | None = field(default=None, metadata={"help": "Hub dataset revision to pin."})
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str | None = field(default=None, metadata={"help": "Split to evaluate on (none: no eval set)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep the first N evaluation rows."})
    train_benchmark: str | None = field(
        default=None,
        metadata={
            "help": "A registered benchmark to train on instead of dataset_name, e.g. tiny-imagenet "
            "(`pmg-aft datasets list`); local copies via --benchmark_data_dir."
        },
    )
    eval_benchmarks: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated registered benchmarks to evaluate on (each with its own prompts and "
            "resolution), or `all` for the 16-dataset suite; replaces eval_split."
        },
    )
    class_names_file: str | None = field(
        default=None,
        metadata={
            "help": "JSON list or text file (one per line) of class names in label order; default: the "
            "dataset's ClassLabel names (WordNet ids are mapped to ImageNet names)."
        },
    )


def parse_args(argv: list[str]) -> tuple[ModelArguments, DataArguments, PMGAFTConfig]:
    """Parse `--config FILE.yaml|json` (optional) and command-line flags, the flags taking precedence."""
    parser = HfArgumentParser((ModelArguments, DataArguments, PMGAFTConfig))
    if "--config" in argv:
        position = argv.index("--config")
        if position + 1 >= len(argv):
            parser.error("--config needs a YAML or JSON file.")
        path = argv[position + 1]
        argv = argv[:position] + argv[position + 2 :]
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
        known = {a.dest for a in parser._actions}
        unknown = sorted(set(values) - known)
        if unknown:
            parser.error(f"unknown keys in {path}: {unknown}")
        parser.set_defaults(**values)
    return parser.parse_args_into_dataclasses(args=argv)


def read_class_names(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    names = (
        json.loads(text) if path.endswith(".json") else [line.strip() for line in text.splitlines() if line.strip()]
    )
    if not isinstance(names, list) or not names:
        raise ValueError(f"{path} must hold a non-empty list of class names in label order.")
    return names


def load_model(args: ModelArguments, seed: int):
    if args.model_name_or_path != TINY:
        model = CLIPModel.from_pretrained(args.model_name_or_path, revision=args.model_revision)
        processor = CLIPProcessor.from_pretrained(args.model_name_or_path, revision=args.model_revision)
        return model, processor
    from .tiny import pretrain_tiny_clip, tiny_clip, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    # Pre-trained on the generated colour patches whatever the fine-tuning data: the tiny default is a demo model.
    pretraining_set = load_image_dataset(GENERATED, split="train", seed=seed + 100)
    model = pretrain_tiny_clip(tiny_clip(seed=seed), tokenizer, pretraining_set, steps=300)
    return model, tokenizer


def main(argv: list[str] | None = None) -> dict[str, float]:
    model_args, data_args, training_args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    set_seed(training_args.seed)

    last_checkpoint = None
    if training_args.do_train and os.path.isdir(training_args.output_dir) and not training_args.resume_from_checkpoint:
        last_checkpoint = get_last_checkpoint(training_args.output_dir)
        if last_checkpoint is not None:
            logger.info("Resuming from %s (pass a fresh --output_dir to start over).", last_checkpoint)

    def split(name: str | None, max_samples: int | None):
        if name is None:
            return None
        data = load_image_dataset(
            data_args.dataset_name,
            split=name,
            config=data_args.dataset_config,
            revision=data_args.dataset_revision,
            max_samples=max_samples,
            seed=training_args.seed,
        )
        if training_args.image_column in data.column_names:  # else the trainer names the missing column
            data = check_images(data, f"{data_args.dataset_name}[{name}]", training_args.image_column,
                                training_args.on_bad_image)  # fmt: skip
        return data

    train_dataset, eval_dataset = None, None
    if training_args.do_train:
        train_dataset = data_args.train_benchmark or split(data_args.train_split, data_args.max_train_samples)
    eval_dataset = data_args.eval_benchmarks or split(data_args.eval_split, data_args.max_eval_samples)
    if data_args.eval_benchmarks and data_args.max_eval_samples and training_args.eval_max_samples is None:
        training_args.eval_max_samples = data_args.max_eval_samples
    class_names = read_class_names(data_args.class_names_file) if data_args.class_names_file else None
    model, processor = load_model(model_args, training_args.seed)

    trainer = PMGAFTTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
        class_names=class_names,
    )
    if (
        data_args.train_benchmark is None
        and not os.path.isdir(data_args.dataset_name)
        and "/" in data_args.dataset_name
    ):
        trainer.train_dataset_id = data_args.dataset_name  # a Hub id, for the model card
    metrics: dict[str, float] = {}
    if training_args.do_train:
        result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint or last_checkpoint)
        trainer.save_model(_internal_call=True)  # saved locally now; pushed below, with the final evaluation
        trainer.log_metrics("train", result.metrics)
        trainer.save_metrics("train", result.metrics)
        trainer.save_state()
        metrics.update(result.metrics)
    if eval_dataset is not None and (training_args.do_eval or training_args.eval_strategy != "no"):
        eval_metrics = trainer.evaluate()
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)
        print_before_after(trainer)
    if training_args.do_train and training_args.push_to_hub:
        trainer.push_to_hub(commit_message="PMG-AFT fine-tuned CLIP", finetuned_from=trainer.base_model)
    return metrics


def print_before_after(trainer: PMGAFTTrainer) -> None:
    """Print clean and robust accuracy per eval dataset: before training (with eval_on_start) and at the end."""
    evals = [entry for entry in trainer.state.log_history if any(k.endswith("_robust_accuracy") for k in entry)]
    if not trainer.is_world_process_zero() or not evals:
        return
    args = trainer.args
    first, last = evals[0], evals[-1]
    prefixes = [k[: -len("_robust_accuracy")] for k in last if k.endswith("_robust_accuracy")]
    print(
        f"\nZero-shot accuracy, PGD-{args.eval_attack_steps} L-{args.attack_norm[1:]} eps={args.eval_eps * 255:g}/255:"
    )
    print(f"  {'':24s} {'':8s} {'clean':>8s} {'robust':>8s}")
    rows = [("before", first)] if args.eval_on_start and len(evals) > 1 else []
    rows.append(("after" if args.do_train else "model", last))
    for prefix in prefixes:
        dataset = prefix.removeprefix("eval").lstrip("_") or "eval split"
        dataset = f"{dataset} ({int(last[prefix + '_samples'])})"
        for label, entry in rows:
            print(f"  {dataset:24s} {label:8s} {entry[prefix + '_clean_accuracy']:8.2%} "
                  f"{entry[prefix + '_robust_accuracy']:8.2%}")  # fmt: skip
            dataset = ""
    if args.do_train:
        print(f"Checkpoint: {args.output_dir} (load it with CLIPModel.from_pretrained)")
    print()
