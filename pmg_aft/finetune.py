"""The fine-tuning job behind `examples/finetune.py` and `pmg-aft train`.

`--method NAME` picks the method's Config/Trainer pair from [`TRAINERS`]; any field of the three argument groups
(`ScriptArguments`, `DataArguments`, the method's config) can be given on the command line, where it overrides the
`--config` YAML/JSON file (which may name the method too).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import warnings
from dataclasses import dataclass, fields

from accelerate import PartialState
from datasets import ClassLabel
from transformers import set_seed

from .checkpoints import checkpoint_problem, last_complete_checkpoint, load_clip, set_aside
from .constants import BAD_IMAGE_POLICIES
from .data import (
    GENERATED,
    check_images,
    check_label_order,
    dataset_class_names,
    get_benchmark,
    is_unsplit_folder,
    load_benchmark,
    load_image_dataset,
    load_streaming_split,
    prompt_class_names,
)
from .domains import COUNT, field
from .errors import InputError, UnknownNameError, exit_on_input_error, machine_conditions
from .evaluation import PROTOCOL_RECORDS, EvalSet, benchmark_eval_set
from .evaluation.suite import benchmark_names
from .outputs import OutputFolderError, check_output_dir, output_lock, refuse_foreign
from .parsing import ArgumentParser, check_fields, close_matches, read_config_file
from .provenance import PROVENANCE_FILE, base_provenance, publish_licence
from .tiny import pretrained_tiny_clip, tiny_tokenizer
from .trainers import TRAINERS, RobustCLIPConfig, RobustCLIPTrainer
from .trainers.guards import check_same_run
from .trainers.saving import run_config

logger = logging.getLogger(__name__)
TINY = "tiny"
DEFAULT_METHOD = "pmg_aft"


@dataclass
class ScriptArguments:
    method: str = field(
        default=DEFAULT_METHOD,
        metadata={
            "help": "The method, a key of pmg_aft.TRAINERS, which picks its config (defaults: that method's "
            "official recipe) and trainer. `--method NAME --help` lists its fields."
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
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start over in an output_dir that holds another run's checkpoints or model, or files pmg_aft did "
            "not write (without it such a folder is refused): its checkpoints are removed, so nothing of the other "
            "run is resumed; files pmg_aft does not write are left alone."
        },
    )
    license: str | None = field(
        default=None,
        metadata={
            "help": "For push_to_hub: the licence of the fine-tuned weights, only where the base model states none "
            "(the base's own licence is kept; a different one is refused)."
        },
    )

    def __post_init__(self) -> None:
        check_fields(self)


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
    max_train_samples: int | None = field(
        default=None, domain=COUNT, metadata={"help": "Keep the first N training rows."}
    )
    max_eval_samples: int | None = field(
        default=None,
        domain=COUNT,
        metadata={
            "help": "Evaluate N rows of each evaluation set: the first N of eval_split; of each of eval_benchmarks, "
            "a random sample of N drawn with the protocol's sample_seed (0), kept in dataset order.",
        },
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
            "choices": PROTOCOL_RECORDS.keys(),
        },
    )
    class_names_file: str | None = field(
        default=None,
        metadata={
            "help": "JSON list or text file (one per line) of class names in label order; default: the "
            "dataset's ClassLabel names (WordNet ids are mapped to ImageNet names)."
        },
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Read the training split as a stream (datasets streaming from the Hub, or local parquet shards): "
            "nothing is downloaded or decoded in advance, each process reads its own shards, and a resumed run "
            "continues where it stopped. Needs max_steps. For sets that do not fit (ImageNet-1k: "
            "--train_benchmark imagenet); pair with decode_on_device on GPUs."
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
        check_fields(self)
        if self.class_names_file is not None and not os.path.isfile(self.class_names_file):
            raise InputError(f"--class_names_file {self.class_names_file}: no such file.")
        if self.class_names_file is not None:
            read_class_names(self.class_names_file)  # its names checked now, before anything is created or loaded
        if self.benchmark_data_dir is not None and not os.path.isdir(self.benchmark_data_dir):
            raise InputError(f"--benchmark_data_dir {self.benchmark_data_dir}: no such folder.")


def parse_args(argv: list[str]) -> tuple[ScriptArguments, DataArguments, RobustCLIPConfig]:
    """Parse `--config FILE.yaml|json` (optional) and command-line flags, the flags taking precedence.

    The method (`--method`, else the file's `method:`, else `pmg_aft`) decides which config class parses the rest.
    """
    with exit_on_input_error():
        first = argparse.ArgumentParser(prog="pmg-aft train", add_help=False, allow_abbrev=False)
        first.add_argument("--config", nargs="?", const="")
        first.add_argument("--method")
        known, _ = first.parse_known_args(argv)
        if known.config == "":
            raise InputError("--config needs a YAML or JSON file.")
        values = read_config_file(known.config) if known.config is not None else {}
        values.pop("config", None)  # a file names no other file
        method = known.method or values.get("method") or DEFAULT_METHOD
        if method not in TRAINERS:
            raise UnknownNameError(f"unknown method {method!r}; choose one of {', '.join(TRAINERS)}.")
        parser = ArgumentParser((ScriptArguments, DataArguments, TRAINERS[method].config_class), prog="pmg-aft train")
        parser.add_argument("--config", nargs="?", help="A YAML or JSON file of argument values; flags override them.")
        parser.set_choices("method", list(TRAINERS))  # the registry now, methods registered after import included
        return parser.parse(argv, values, source=known.config, hint=_hint, context=f" for method {method}")


def _hint(unknown: list[str]) -> str:
    """Which method has each unknown option, or the option of a close spelling."""
    hints, rest = [], []
    for name in unknown:
        owners = [m for m, t in TRAINERS.items() if name in {f.name for f in fields(t.config_class)}]
        if owners:
            hints.append(f"{name} is a field of {', '.join(owners)}, not of this method")
        else:
            rest.append(name)
    known = {f.name for group in (ScriptArguments, DataArguments, RobustCLIPConfig) for f in fields(group)}
    return (f" ({'; '.join(hints)})" if hints else "") + close_matches(rest, known)


def read_class_names(path: str) -> list[str]:
    """The class names of a `--class_names_file` in label order: a JSON list of strings, or one name per line (a blank
    line inside the list is a blank class, not skipped: skipping it would shift every later label). Checked as the
    prompts will use them ([`prompt_class_names`])."""
    try:
        with open(path, encoding="utf-8-sig") as f:  # a byte-order mark is not part of the first name
            text = f.read()
        names = json.loads(text) if path.endswith(".json") else text.rstrip().split("\n")
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"--class_names_file {path}: cannot be read as text or JSON ({error}).") from error
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise InputError(f"--class_names_file {path} must hold a non-empty list of class names in label order.")
    names = [n.strip() for n in names]
    prompt_class_names(names, f"--class_names_file {path}")
    return names


def load_model(args: ScriptArguments, seed: int):
    """The model and its processor (a tokenizer for the tiny default)."""
    if args.model_name_or_path != TINY:
        return load_clip(args.model_name_or_path, revision=args.model_revision)
    # Pre-trained on the generated colour patches whatever the fine-tuning data: the tiny default is a demo model.
    return pretrained_tiny_clip(seed=seed), tiny_tokenizer()


def load_datasets(data_args: DataArguments, training_args: RobustCLIPConfig, class_names: list[str] | None = None):
    """The training set (if training) and the eval set(s): benchmarks by name, or a split of `dataset_name` as an
    [`EvalSet`] that records where it comes from and its `max_eval_samples` cap."""
    train_dataset = None
    if training_args.do_train and data_args.streaming:
        train_dataset = streaming_train_set(data_args, training_args)
    elif training_args.do_train and data_args.train_benchmark:
        train_dataset = load_benchmark(data_args.train_benchmark, "train", max_samples=data_args.max_train_samples,
                                       benchmark_data_dir=data_args.benchmark_data_dir,
                                       on_bad_image=data_args.on_bad_image)  # fmt: skip
    elif training_args.do_train:
        train_dataset = load_split(data_args, training_args, data_args.train_split, data_args.max_train_samples)
    if data_args.eval_benchmarks:
        eval_dataset = {}
        for name in benchmark_names(data_args.eval_benchmarks):
            eval_dataset[name] = benchmark_eval_set(name, data_args.protocol,
                                                    benchmark_data_dir=data_args.benchmark_data_dir,
                                                    max_eval_samples=data_args.max_eval_samples,
                                                    on_bad_image=data_args.on_bad_image)  # fmt: skip
    elif data_args.eval_split is not None:
        eval_dataset = eval_split(data_args, training_args, class_names, train_dataset)
    else:
        eval_dataset = None
    return train_dataset, eval_dataset


def streaming_train_set(data_args: DataArguments, training_args: RobustCLIPConfig):
    """The training split as a `datasets.IterableDataset` with its images left encoded (the trainer's stream decodes
    each once, on the host or on the accelerator): a registered benchmark, a Hub id or local parquet shards."""
    if data_args.train_benchmark:
        return load_benchmark(data_args.train_benchmark, "train", max_samples=data_args.max_train_samples,
                              benchmark_data_dir=data_args.benchmark_data_dir, revision=data_args.dataset_revision,
                              streaming=True, decode=False)  # fmt: skip
    return load_streaming_split(data_args.dataset_name, data_args.train_split, data_args.dataset_config,
                                data_args.dataset_revision, training_args.image_column,
                                data_args.max_train_samples)  # fmt: skip


def load_split(data_args: DataArguments, training_args: RobustCLIPConfig, split: str, max_samples: int | None):
    """One split of `dataset_name` (its first `max_samples` rows), every image checked once."""
    data = load_image_dataset(data_args.dataset_name, split=split, config=data_args.dataset_config,
                              revision=data_args.dataset_revision, max_samples=max_samples,
                              seed=training_args.seed)  # fmt: skip
    if training_args.image_column in data.column_names:  # else the trainer names the missing column
        data = check_images(data, f"{data_args.dataset_name}[{split}]", training_args.image_column,
                            data_args.on_bad_image)  # fmt: skip
    return data


def eval_split(data_args: DataArguments, training_args: RobustCLIPConfig, class_names, train_dataset) -> EvalSet:
    """`eval_split` of `dataset_name` as an eval set; named after what it holds when a folder has no splits."""
    data = load_split(data_args, training_args, data_args.eval_split, data_args.max_eval_samples)
    own = dataset_class_names(data, training_args.label_column)
    if class_names is not None and own is not None:  # the names file renames the split's classes, as training's
        if len(own) != len(class_names):
            raise InputError(
                f"--class_names_file has {len(class_names)} names but {data_args.eval_split}'s "
                f"'{training_args.label_column}' ClassLabel has {len(own)} classes: give one name per class."
            )
        check_label_order(class_names, own, f"--class_names_file for {data_args.eval_split}")
        data = data.cast_column(training_args.label_column, ClassLabel(names=list(class_names)))
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
            stacklevel=3,
        )
    return EvalSet.from_dataset(
        title, data, class_names=names, max_eval_samples=data_args.max_eval_samples,
        hub_id=train_dataset_id(data_args), split=data_args.eval_split, revision=data_args.dataset_revision,
        **training_args.eval_set_defaults(),
    )  # fmt: skip


def train_dataset_id(data_args: DataArguments) -> str | None:
    """The Hub id the data comes from (for the model card), `None` for local and generated data."""
    if data_args.train_benchmark:
        return get_benchmark(data_args.train_benchmark).hub_id
    name = data_args.dataset_name
    return name if not os.path.isdir(name) and name.count("/") == 1 else None


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the job: train (resuming its own last complete checkpoint), evaluate before and after, save, push.

    The output folder is checked before any compute ([`claim_output_dir`]) and held by this run alone (an OS lock);
    a condition of the machine (a full disk, a read-only folder) is one line naming it."""
    script_args, data_args, training_args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    set_seed(training_args.seed)
    output_dir = training_args.output_dir
    with exit_on_input_error(), machine_conditions(output_dir):
        evaluates = (data_args.eval_split or data_args.eval_benchmarks) and (
            training_args.do_eval or training_args.eval_strategy != "no"
        )
        if not training_args.do_train and not evaluates:
            raise InputError(
                "nothing to do: do_train is false and no evaluation is asked for (do_eval with an eval_split or "
                "eval_benchmarks); set do_train true to train."
            )
        asked = training_args.do_eval or training_args.eval_strategy != "no" or training_args.eval_on_start
        if asked and not (data_args.eval_split or data_args.eval_benchmarks):
            raise InputError(
                "an evaluation is asked for (do_eval, eval_strategy or eval_on_start) but no eval set is named: give "
                "eval_split or eval_benchmarks, or set do_eval false and eval_strategy no."
            )
        claim_output_dir(script_args, data_args, training_args)
        with output_lock(output_dir, PartialState(), "training"):
            return run(script_args, data_args, training_args)


def run(script_args: ScriptArguments, data_args: DataArguments, training_args: RobustCLIPConfig) -> dict[str, float]:
    """The job in its claimed, locked output folder."""
    given = training_args.resume_from_checkpoint
    if script_args.overwrite_output_dir and isinstance(given, str) and given.strip().lower() not in ("", "true"):
        raise InputError(
            "--resume_from_checkpoint continues a run and --overwrite_output_dir starts one over: give one of them."
        )
    state = PartialState()
    if script_args.overwrite_output_dir and training_args.do_train and state.is_main_process:
        clear_training_dir(training_args.output_dir)
    state.wait_for_everyone()
    resume = None if script_args.overwrite_output_dir else resume_checkpoint(training_args)
    # Before the model and data load: what the arguments alone say of the run to resume or replace, and the licence
    # a push would publish.
    saved = [(resume, "checkpoint"), (None if resume else training_args.output_dir, "model saved in")]
    named = resume is not None and resume == training_args.resume_from_checkpoint
    fix = "name a checkpoint of this run in --resume_from_checkpoint, or leave it out" if named else None
    for folder, what in saved if training_args.do_train else ():
        if folder and os.path.isfile(os.path.join(folder, PROVENANCE_FILE)):
            check_same_run(folder, run_config(script_args.method, training_args), what, partial=True, fix=fix)
    if training_args.do_train and training_args.push_to_hub:
        publish_licence(base_provenance(script_args.model_name_or_path)[0], script_args.license)
    trainer = build_trainer(script_args, data_args, training_args)
    trainer.train_dataset_id = train_dataset_id(data_args) or trainer.train_dataset_id
    trainer.data_record = data_record(data_args)
    if training_args.do_train and resume is None:
        check_saved_model(training_args.output_dir, trainer)
    metrics: dict[str, float] = {}
    if training_args.do_train:
        result = trainer.train(resume_from_checkpoint=resume)
        trainer.save_model(_internal_call=True)  # saved locally now; pushed below, with the final evaluation
        trainer.log_metrics("train", result.metrics)
        trainer.save_metrics("train", result.metrics)
        trainer.save_state()
        metrics.update(result.metrics)
    if trainer.eval_dataset is not None and (training_args.do_eval or training_args.eval_strategy != "no"):
        eval_metrics = trainer.evaluate()
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)
        trainer.save_report()
        print_before_after(trainer)
    if training_args.do_train and training_args.push_to_hub:
        trainer.push_to_hub(finetuned_from=trainer.base_model, license=script_args.license)
    return metrics


# What a training run writes into its output folder besides the model files it overwrites itself: removed by
# --overwrite_output_dir, so nothing of an earlier run is resumed, rotated or published with the new one.
RUN_ARTIFACTS = ("adapter", "eval", PROVENANCE_FILE, "trainer_state.json", "all_results.json", "train_results.json",
                 "eval_results.json")  # fmt: skip
CHECKPOINT = re.compile(r"(incomplete-)?checkpoint-\d+(-\d+)?")


def _local(path: str | None) -> str | None:
    return path if path and os.path.exists(os.path.expanduser(path)) else None


def claim_output_dir(script_args: ScriptArguments, data_args: DataArguments, training_args: RobustCLIPConfig) -> None:
    """Check, before any compute, that `output_dir` can take this run: a writable folder that is no input (the base
    model, the data) and holds none; holding only this toolkit's training output (a run's own, resumed, or another
    one's, refused once the run is known) or, with `--overwrite_output_dir`, anything."""
    output_dir = training_args.output_dir
    inputs = [_local(script_args.model_name_or_path), _local(data_args.dataset_name), data_args.benchmark_data_dir]
    check_output_dir(output_dir, inputs, contains_inputs_ok=False)
    folder = output_dir if os.path.isdir(output_dir) else None
    names = [n for n in os.listdir(folder) if not n.startswith((".", "incomplete-"))] if folder else []
    ours = os.path.isfile(os.path.join(output_dir, PROVENANCE_FILE)) or any(
        CHECKPOINT.fullmatch(n) and os.path.isfile(os.path.join(output_dir, n, PROVENANCE_FILE)) for n in names
    )
    if not ours:
        refuse_foreign(output_dir, names, "files that are no pmg_aft training run", script_args.overwrite_output_dir)
        # Not even --overwrite_output_dir lets Trainer's checkpoint rotation remove a folder pmg_aft did not write.
        foreign = [n for n in names if CHECKPOINT.fullmatch(n) and not os.path.isfile(
            os.path.join(output_dir, n, "trainer_state.json"))]  # fmt: skip
        if foreign:
            raise OutputFolderError(
                f"{output_dir} holds {', '.join(foreign)}, which no training run wrote: a run's checkpoint rotation "
                "would remove it. Move it away or pass another --output_dir."
            )


# What marks a folder of RUN_ARTIFACTS, or a checkpoint, as written by a run (a user's own `eval/` is left alone).
MARKS = {"eval": "report.json", "adapter": "adapter_config.json"}


def clear_training_dir(output_dir: str) -> None:
    """Remove an earlier run's checkpoints and run files from `output_dir` (`--overwrite_output_dir`), leaving files
    and folders pmg_aft does not write alone."""
    for name in os.listdir(output_dir):
        path = os.path.join(output_dir, name)
        if os.path.isdir(path):
            mark = "trainer_state.json" if CHECKPOINT.fullmatch(name) else MARKS.get(name)
            if mark and os.path.isfile(os.path.join(path, mark)):
                shutil.rmtree(path)
                logger.info("--overwrite_output_dir: removed %s", path)
        elif name in RUN_ARTIFACTS:
            os.remove(path)
            logger.info("--overwrite_output_dir: removed %s", path)


def check_saved_model(output_dir: str, trainer: RobustCLIPTrainer) -> None:
    """Refuse to train over a finished model of another run in `output_dir` (its result would be lost without a
    word); the same run may be run again."""
    if os.path.isfile(os.path.join(output_dir, PROVENANCE_FILE)):
        check_same_run(output_dir, trainer.run_record(), what="model saved in")


def data_record(data_args: DataArguments) -> dict:
    """Where the training data comes from, as a run record holds it (a local folder by its absolute path)."""
    local = _local(data_args.dataset_name)
    return {"dataset": os.path.abspath(local) if local else data_args.dataset_name,
            "config": data_args.dataset_config, "revision": data_args.dataset_revision,
            "split": data_args.train_split, "max_train_samples": data_args.max_train_samples,
            "benchmark": data_args.train_benchmark, "streaming": data_args.streaming,
            "on_bad_image": data_args.on_bad_image}  # fmt: skip


def resume_checkpoint(training_args: RobustCLIPConfig) -> str | None:
    """The checkpoint to resume from: the one `resume_from_checkpoint` names (checked), else (unset or `true`) the
    newest complete one in `output_dir`; half-written ones are set aside under names nothing resumes."""
    resume = training_args.resume_from_checkpoint
    named = isinstance(resume, str) and resume.strip().lower() not in ("", "true", "false")
    if not training_args.do_train:
        return None
    if named:
        problem = checkpoint_problem(resume)
        if problem is not None:
            raise InputError(f"cannot resume from {resume}: {problem}.")
        return resume
    if not os.path.isdir(training_args.output_dir):
        return None
    last_checkpoint, broken = last_complete_checkpoint(training_args.output_dir)
    state = PartialState()
    state.wait_for_everyone()  # every process has chosen before the main one moves the broken ones
    for path, problem in broken.items() if state.is_main_process else ():
        set_aside(path, problem)
    state.wait_for_everyone()
    if last_checkpoint is not None:
        logger.info("Resuming from %s (pass a fresh --output_dir to start over).", last_checkpoint)
    return last_checkpoint


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
        dataset = f"{'eval split' if name == 'eval' else name} ({result.samples})"
        for label, report in rows:
            values = report.results[name]
            print(f"  {dataset:24s} {label:{width}s} {values.clean_accuracy:8.2%} {values.robust_accuracy[key]:8.2%}")
            dataset = ""
    if args.do_train:
        print(
            f"Checkpoint: {args.output_dir} (load it with CLIPModel.from_pretrained); report: {args.output_dir}/eval"
        )
    print()
