"""The fine-tuning job behind `examples/finetune.py` and `pmg-aft train`.

`--method NAME` picks the method's Config/Trainer pair from [`TRAINERS`]; any field of the three argument groups
(`ScriptArguments`, `DataArguments`, the method's config) can be given on the command line, where it overrides the
`--config` YAML/JSON file (which may name the method too).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import types
import typing
import warnings
from dataclasses import dataclass, field, fields

import yaml
from accelerate import PartialState
from transformers import HfArgumentParser, TrainingArguments, set_seed

from .attacks import PixelValue, parse_pixel_value
from .checkpoints import checkpoint_problem, last_complete_checkpoint, load_clip, set_aside
from .constants import BAD_IMAGE_POLICIES, PROTOCOLS, RENAMED_OPTIONS
from .data import (
    EVAL_SUITE,
    GENERATED,
    check_images,
    dataset_class_names,
    get_benchmark,
    is_unsplit_folder,
    load_benchmark,
    load_image_dataset,
)
from .errors import exit_on_input_error
from .evaluation import EvalSet, benchmark_eval_set
from .tiny import pretrain_tiny_clip, tiny_clip, tiny_tokenizer
from .trainers import TRAINERS, RobustCLIPConfig, RobustCLIPTrainer

logger = logging.getLogger(__name__)
TINY = "tiny"
DEFAULT_METHOD = "pmg_aft"


@dataclass
class ScriptArguments:
    method: str = field(
        default=DEFAULT_METHOD,
        metadata={
            "help": "The method, which picks its config (defaults: that method's official recipe) and trainer: "
            "pmg_aft, tecoa, fare (unsupervised), tga_zsr or clean (no attack). `--method NAME --help` lists "
            "its fields.",
            "choices": list(TRAINERS),
        },
    )
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
        default=GENERATED,
        metadata={
            "help": "Hub dataset id (e.g. zh-plus/tiny-imagenet), a local save_to_disk / parquet / image "
            f"folder, or `{GENERATED}` (generated offline)."
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration."})
    dataset_revision: str | None = field(default=None, metadata={"help": "Hub dataset revision to pin."})
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str | None = field(default=None, metadata={"help": "Split to evaluate on (none: no eval set)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep the first N training rows."})
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Keep the first N rows of each evaluation set (eval_split or benchmarks)."}
    )
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
            "help": "Comma-separated registered benchmarks to evaluate on (each with its protocol's prompts and "
            "resolution), or `all` for the 16-dataset suite; replaces eval_split."
        },
    )
    benchmark_data_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder with local copies of benchmarks given by name, one sub-folder per benchmark "
            "(`cifar10/`, `tiny-imagenet/`, ...) in the Hub dataset's schema; default: the Hub."
        },
    )
    protocol: str = field(
        default="pmg_aft",
        metadata={
            "help": "Whose class texts and preprocessing the eval benchmarks get: `pmg_aft` (the official PMG-AFT "
            "evaluation's), `tga_zsr` or `clip_benchmark` (template ensembles). The trainer evaluates them with its "
            "own head and eval attack; `pmg-aft eval --protocol` runs a whole protocol.",
            "choices": list(PROTOCOLS),
        },
    )
    class_names_file: str | None = field(
        default=None,
        metadata={
            "help": "JSON list or text file (one per line) of class names in label order; default: the "
            "dataset's ClassLabel names (WordNet ids are mapped to ImageNet names)."
        },
    )
    on_bad_image: str = field(
        default="raise",
        metadata={
            "help": "Undecodable images, checked once before training: `raise` names the dataset and index of "
            "the first, `skip` drops them and logs how many.",
            "choices": list(BAD_IMAGE_POLICIES),
        },
    )

    def __post_init__(self) -> None:
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} {value}: give a number of rows >= 1, or leave it out to keep them all.")
        if self.class_names_file is not None and not os.path.isfile(self.class_names_file):
            raise ValueError(f"--class_names_file {self.class_names_file}: no such file.")
        if self.benchmark_data_dir is not None and not os.path.isdir(self.benchmark_data_dir):
            raise ValueError(f"--benchmark_data_dir {self.benchmark_data_dir}: no such folder.")


def _flag(argv: list[str], name: str) -> str | None:
    """The value of `--name VALUE` or `--name=VALUE` in `argv`, if present."""
    for i, arg in enumerate(argv):
        if arg == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def parse_args(argv: list[str]) -> tuple[ScriptArguments, DataArguments, RobustCLIPConfig]:
    """Parse `--config FILE.yaml|json` (optional) and command-line flags, the flags taking precedence.

    The method (`--method`, else the file's `method:`, else `pmg_aft`) decides which config class parses the rest.
    """
    argv = join_negative_values(argv)
    values: dict = {}
    path = _flag(argv, "config")
    if "--config" in argv or path is not None:
        if path is None:
            raise SystemExit("pmg-aft: --config needs a YAML or JSON file.")
        argv = [a for i, a in enumerate(argv) if a != "--config" and (i == 0 or argv[i - 1] != "--config")]
        argv = [a for a in argv if not a.startswith("--config=")]
        if not os.path.isfile(path):
            raise SystemExit(f"pmg-aft: --config {path}: no such file.")
        try:
            with open(path, encoding="utf-8") as f:
                values = yaml.safe_load(f) or {}
        except yaml.YAMLError as error:
            raise SystemExit(f"pmg-aft: {path} is not valid YAML/JSON: {str(error).splitlines()[0]}") from error
        if not isinstance(values, dict):
            raise SystemExit(f"pmg-aft: {path} must hold a mapping of argument names to values.")
    method = _flag(argv, "method") or values.get("method") or DEFAULT_METHOD
    if method not in TRAINERS:
        raise SystemExit(f"pmg-aft: unknown method {method!r}; choose one of {', '.join(TRAINERS)}.")
    config_class = TRAINERS[method].config_class
    parser = HfArgumentParser((ScriptArguments, DataArguments, config_class))
    known = {f.name for group in (ScriptArguments, DataArguments, config_class) for f in fields(group)}
    flags = {a[2:].split("=", 1)[0].replace("-", "_") for a in argv if a.startswith("--")}
    for where, names in ((f"keys in {path}", set(values)), ("flags", flags)):
        unknown = sorted(names - known - {"help", "config"})
        if unknown:
            raise SystemExit(f"pmg-aft: unknown {where} for method {method}: {unknown}{_hint(unknown)}.")
    hints = {name: hint for group in (ScriptArguments, DataArguments, config_class)
             for name, hint in typing.get_type_hints(group).items()}  # fmt: skip
    values = {name: check_value(name, value, hints.get(name), path) for name, value in values.items()}
    parser.set_defaults(**values)
    with exit_on_input_error():  # a value a config check rejects: its own message, without a traceback
        return parser.parse_args_into_dataclasses(args=argv)


def join_negative_values(argv: list[str]) -> list[str]:
    """`--flag -1/255` as `--flag=-1/255`: argparse takes a value starting with `-` for an option and fails with
    "expected one argument"; joined, the value reaches the field's own check, which names the problem."""
    out: list[str] = []
    for arg in argv:
        previous = out[-1] if out else ""
        # argparse reads plain negative numbers (-1, -0.5) itself, also inside lists: only the others are joined.
        negative = re.match(r"-\.?\d", arg) is not None and re.fullmatch(r"-\d+|-\d*\.\d+", arg) is None
        if negative and previous.startswith("--") and "=" not in previous:
            out[-1] = f"{previous}={arg}"
            continue
        out.append(arg)
    return out


def check_value(name: str, value, hint, path: str | None):
    """A config file's `value` for the field `name`, checked against the field's type (YAML gives lists, numbers
    and strings as written, and argparse does not convert defaults): a number where a number is expected, three
    numbers for a list, ... Numbers written as strings (`1e-5`, which YAML reads as text) are converted."""
    kinds = [k for k in typing.get_args(hint) if k is not type(None)] if _is_union(hint) else [hint]
    if value is None or len(kinds) != 1:
        return value
    kind, where = kinds[0], f"{path}: {name}"

    def number(v, cast):
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise SystemExit(f"pmg-aft: {where} must be a number, got {v!r} ({type(v).__name__}).")
        try:
            value = parse_pixel_value(v, name)  # numbers, numbers YAML read as text (1e-5), fractions (1/255)
        except ValueError:
            raise SystemExit(f"pmg-aft: {where} must be a number, got {v!r}.") from None
        if cast is int and not float(value).is_integer():
            raise SystemExit(f"pmg-aft: {where} must be a whole number, got {v!r}.")
        return cast(value)

    if kind is PixelValue:
        return number(value, float)
    if kind in (int, float):
        return number(value, kind)
    if kind is bool and not isinstance(value, bool):
        raise SystemExit(f"pmg-aft: {where} must be true or false, got {value!r}.")
    if kind is str and isinstance(value, (list, dict)) and name not in TRAINING_ARGUMENTS:  # fsdp takes a list too
        raise SystemExit(f"pmg-aft: {where} must be a single value, got {value!r}.")
    if typing.get_origin(kind) is list and typing.get_args(kind)[:1] == (float,):
        if not isinstance(value, list):
            raise SystemExit(f"pmg-aft: {where} must be a list of numbers, e.g. [0.485, 0.456, 0.406]; got {value!r}.")
        return [number(v, float) for v in value]
    return value


TRAINING_ARGUMENTS = frozenset(f.name for f in fields(TrainingArguments))


def _is_union(hint) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _hint(unknown: list[str]) -> str:
    """Which method has each unknown option, or what an option of an earlier release is called now."""
    hints = []
    for name in unknown:
        owners = [m for m, t in TRAINERS.items() if name in {f.name for f in fields(t.config_class)}]
        if owners:
            hints.append(f"{name} is a field of {', '.join(owners)}, not of this method")
        elif name in RENAMED_OPTIONS:
            hints.append(f"{name} is now {RENAMED_OPTIONS[name]}")
    return f" ({'; '.join(hints)})" if hints else ""


def read_class_names(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    names = (
        json.loads(text) if path.endswith(".json") else [line.strip() for line in text.splitlines() if line.strip()]
    )
    if not isinstance(names, list) or not names:
        raise ValueError(f"{path} must hold a non-empty list of class names in label order.")
    return names


def load_model(args: ScriptArguments, seed: int):
    """The model and its processor (a tokenizer for the tiny default)."""
    if args.model_name_or_path != TINY:
        return load_clip(args.model_name_or_path, revision=args.model_revision)
    tokenizer = tiny_tokenizer()
    # Pre-trained on the generated colour patches whatever the fine-tuning data: the tiny default is a demo model.
    pretraining_set = load_image_dataset(GENERATED, split="train", seed=seed + 100)
    model = pretrain_tiny_clip(tiny_clip(seed=seed), tokenizer, pretraining_set, steps=300)
    return model, tokenizer


def load_datasets(data_args: DataArguments, training_args: RobustCLIPConfig, class_names: list[str] | None = None):
    """The training set (if training) and the eval set(s): benchmarks by name, or a split of `dataset_name` as an
    [`EvalSet`] that records where it comes from and its `max_eval_samples` cap."""

    def split(name: str | None, max_samples: int | None):
        if name is None:
            return None
        data = load_image_dataset(data_args.dataset_name, split=name, config=data_args.dataset_config,
                                  revision=data_args.dataset_revision, max_samples=max_samples,
                                  seed=training_args.seed)  # fmt: skip
        if training_args.image_column in data.column_names:  # else the trainer names the missing column
            data = check_images(data, f"{data_args.dataset_name}[{name}]", training_args.image_column,
                                data_args.on_bad_image)  # fmt: skip
        return data

    def local(name: str) -> str | None:
        return os.path.join(data_args.benchmark_data_dir, name) if data_args.benchmark_data_dir else None

    train_dataset = None
    if training_args.do_train and data_args.train_benchmark:
        bench = get_benchmark(data_args.train_benchmark)
        train_dataset = load_benchmark(bench.name, "train", local(bench.name), max_samples=data_args.max_train_samples,
                                       on_bad_image=data_args.on_bad_image)  # fmt: skip
    elif training_args.do_train:
        train_dataset = split(data_args.train_split, data_args.max_train_samples)
    if data_args.eval_benchmarks:
        names = data_args.eval_benchmarks.split(",") if data_args.eval_benchmarks.strip() != "all" else EVAL_SUITE
        eval_dataset = {}
        for name in (n.strip() for n in names if n.strip()):
            eval_set = benchmark_eval_set(name, data_args.protocol, data_args.benchmark_data_dir,
                                          data_args.max_eval_samples, data_args.on_bad_image)  # fmt: skip
            eval_dataset[eval_set.name] = eval_set
    elif data_args.eval_split is not None:
        data = split(data_args.eval_split, data_args.max_eval_samples)
        # Without a ClassLabel of its own, the eval split takes the training classes, as the trainer would.
        names = class_names or dataset_class_names(train_dataset, training_args.label_column)
        title = "eval"
        if is_unsplit_folder(data_args.dataset_name) and data_args.eval_split != data_args.train_split:
            title = "training images" if training_args.do_train else "all images"
            warnings.warn(
                f"{data_args.dataset_name} names no splits, so eval_split {data_args.eval_split!r} is all of its "
                f"{len(data)} images{', the training images' if training_args.do_train else ''}: its accuracy says "
                "nothing about held-out data and is reported as "
                f"{title!r}. Put held-out images in a test/ sub-folder (or save a DatasetDict) for a real eval split.",
                stacklevel=2,
            )
        eval_dataset = EvalSet.from_dataset(
            title, data, class_names=names, max_samples=data_args.max_eval_samples,
            hub_id=train_dataset_id(data_args), split=data_args.eval_split, revision=data_args.dataset_revision,
            **training_args.eval_set_defaults(),
        )  # fmt: skip
    else:
        eval_dataset = None
    return train_dataset, eval_dataset


def train_dataset_id(data_args: DataArguments) -> str | None:
    """The Hub id the data comes from (for the model card), `None` for local and generated data."""
    if data_args.train_benchmark:
        return get_benchmark(data_args.train_benchmark).hub_id
    name = data_args.dataset_name
    return name if not os.path.isdir(name) and name.count("/") == 1 else None


def main(argv: list[str] | None = None) -> dict[str, float]:
    script_args, data_args, training_args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    set_seed(training_args.seed)

    last_checkpoint = None
    resume = training_args.resume_from_checkpoint  # a path, or true/false/unset: the last checkpoint, if any
    named = isinstance(resume, str) and resume.strip().lower() not in ("", "true", "false")
    if training_args.do_train and os.path.isdir(training_args.output_dir) and not named:
        last_checkpoint, broken = last_complete_checkpoint(training_args.output_dir)
        state = PartialState()
        state.wait_for_everyone()  # every process has chosen before the main one moves the broken ones
        for path, problem in broken.items() if state.is_main_process else ():
            set_aside(path, problem)
        state.wait_for_everyone()
        if last_checkpoint is not None:
            logger.info("Resuming from %s (pass a fresh --output_dir to start over).", last_checkpoint)
    elif training_args.do_train and named:
        problem = checkpoint_problem(resume)
        if problem is not None:
            raise SystemExit(f"pmg-aft: cannot resume from {resume}: {problem}.")
    with exit_on_input_error():  # bad data, model or options: one line naming the cause, before any compute is spent
        trainer = build_trainer(script_args, data_args, training_args)
    trainer.train_dataset_id = train_dataset_id(data_args) or trainer.train_dataset_id
    eval_dataset = trainer.eval_dataset
    metrics: dict[str, float] = {}
    if training_args.do_train:
        result = trainer.train(resume_from_checkpoint=resume if named else last_checkpoint)
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
        trainer.save_report()
        print_before_after(trainer)
    if training_args.do_train and training_args.push_to_hub:
        trainer.push_to_hub(finetuned_from=trainer.base_model)
    return metrics


def build_trainer(script_args: ScriptArguments, data_args: DataArguments, training_args: RobustCLIPConfig):
    """The method's trainer on the model and data the arguments name, every input checked."""
    class_names = read_class_names(data_args.class_names_file) if data_args.class_names_file else None
    train_dataset, eval_dataset = load_datasets(data_args, training_args, class_names)
    model, processor = load_model(script_args, training_args.seed)
    return TRAINERS[script_args.method](
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
        class_names=class_names,
    )


def print_before_after(trainer: RobustCLIPTrainer) -> None:
    """Print clean and robust accuracy per eval set: before training (with eval_on_start) and at the end."""
    reports = trainer.reports
    if not trainer.is_world_process_zero() or not reports:
        return
    args = trainer.args
    first, last = reports[0], reports[-1]
    print(f"\n{trainer.method_info.name}: zero-shot accuracy under {last.settings[0].describe()}, protocol "
          f"{last.protocol}, logit scale {last.logit_scale:g}:")  # fmt: skip
    rows = []
    if args.eval_on_start and len(reports) > 1:  # a resumed run's first evaluation is not of the base model
        step = trainer.report_steps[0]
        rows.append(("before" if step == 0 else f"at resume (step {step})", first))
    rows.append(("after" if args.do_train else "model", last))
    width = max(8, *(len(label) for label, _ in rows))
    print(f"  {'':24s} {'':{width}s} {'clean':>8s} {'robust':>8s}")
    key = last.settings[0].key
    for name, result in last.results.items():
        dataset = f"{'eval split' if name == 'eval' else name} ({result['samples']})"
        for label, report in rows:
            values = report.results[name]
            clean, robust = values["clean_accuracy"], values["robust_accuracy"][key]
            print(f"  {dataset:24s} {label:{width}s} {clean:8.2%} {robust:8.2%}")
            dataset = ""
    if args.do_train:
        print(
            f"Checkpoint: {args.output_dir} (load it with CLIPModel.from_pretrained); report: {args.output_dir}/eval"
        )
    print()
