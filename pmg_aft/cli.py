"""The `pmg-aft` command. Every subcommand parses snake_case flags with `HfArgumentParser`, as `pmg-aft train` does."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field

from accelerate import PartialState
from huggingface_hub import HfApi, get_token
from transformers import HfArgumentParser

from .attacks import parse_pixel_value
from .checkpoints import load_clip
from .constants import (
    AUTOATTACK_VARIANTS,
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    NORMALIZATIONS,
    NORMS,
    PROTOCOLS,
    RENAMED_OPTIONS,
)
from .convert import convert_openai_checkpoint
from .data import BENCHMARKS, get_benchmark
from .data.loading import hub_split_files, unavailable_message
from .data.registry import revisions_file
from .errors import error_message, is_input_error
from .evaluation import PROTOCOL_RECORDS, compare, evaluate_robustness, get_protocol
from .evaluation.engine import PRECISIONS
from .finetune import join_negative_values
from .finetune import main as finetune
from .hub import MethodInfo, checkpoint_card, push, read_run_info
from .trainers import TRAINERS
from .trainers.base_trainer import recipe_of

USAGE = """usage: pmg-aft <command> [options]

commands:
  train                      robust fine-tuning of a CLIP model (--method pmg_aft|tecoa|fare|tga_zsr|clean;
                             the flags of examples/finetune.py; --config FILE.yaml)
  datasets list              the registered benchmarks: Hub ids, splits, pinned revisions, columns, class counts
  datasets download NAME|all pre-fetch benchmarks into the Hugging Face cache (for offline compute nodes)
  protocols                  the evaluation protocols (pmg_aft, tga_zsr, clip_benchmark): every field and its source
  eval                       clean and robust zero-shot accuracy of any CLIP checkpoint (pmg-aft eval --help)
  push                       upload a checkpoint with its model card and plots to the Hub (pmg-aft push --help)
  compare                    evaluate several models with the same suite into one table (pmg-aft compare --help)
  convert                    an OpenAI-style / open_clip ViT checkpoint to a CLIPModel folder (pmg-aft convert --help)
"""


@dataclass
class SuiteArguments:
    """The evaluation-suite options shared by `pmg-aft eval` and `pmg-aft compare`."""

    output_dir: str = field(metadata={"help": "Report folder; a rerun resumes finished datasets."})
    benchmarks: str = field(
        default="all", metadata={"help": "`all` or comma-separated names (pmg-aft datasets list)."}
    )
    protocol: str = field(
        default="pmg_aft",
        metadata={
            "help": "The evaluation protocol: every option below defaults to its value (`pmg-aft protocols` lists "
            "them); a flag overrides one field and the report says so.",
            "choices": list(PROTOCOLS),
        },
    )
    attacks: str | None = field(default=None, metadata={"help": "Comma-separated: pgd, cw, autoattack."})
    eps: str | None = field(default=None, metadata={"help": "Comma-separated budgets, e.g. 1/255,4/255."})
    steps: str | None = field(default=None, metadata={"help": "PGD/CW steps, comma-separated, e.g. 10,100."})
    step_size: str | None = field(default=None, metadata={"help": "PGD/CW step size, e.g. 1/255."})
    norm: str | None = field(default=None, metadata={"help": "Threat model.", "choices": list(NORMS)})
    random_start: bool | None = field(default=None, metadata={"help": "PGD/CW start at a random point of the ball."})
    first_success: bool | None = field(
        default=None, metadata={"help": "Keep each sample's first success (true) or count the final iterate (false)."}
    )
    autoattack: str | None = field(
        default=None, metadata={"help": "AutoAttack variant.", "choices": list(AUTOATTACK_VARIANTS)}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "The first N test samples per dataset."})
    logit_scale: float | None = field(default=None, metadata={"help": "The cosine logits' scale (1 or 100)."})
    normalization: str | None = field(
        default=None, metadata={"help": "Image mean/std.", "choices": list(NORMALIZATIONS)}
    )
    mixed_precision: str | None = field(
        default=None, metadata={"help": "Precision of attacks and predictions.", "choices": list(PRECISIONS)}
    )
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Batch size per process."})
    dataloader_num_workers: int = field(
        default=0, metadata={"help": "Data-loader worker processes (decoding and resizing beside the attack)."}
    )
    benchmark_data_dir: str | None = field(default=None, metadata={"help": "Local copies, one sub-folder each."})
    seed: int = field(default=0, metadata={"help": "Seeds random starts and AutoAttack."})

    def __post_init__(self) -> None:
        # Every number checked here, naming its flag, rather than after the model has loaded.
        kwargs = self.suite_kwargs()
        fields = ("attacks", "eps", "steps", "step_size", "norm", "random_start", "first_success", "autoattack")
        get_protocol(self.protocol).override(**{k: kwargs[k] for k in fields}).settings()
        if self.benchmarks.strip() != "all":
            for name in (n.strip() for n in self.benchmarks.split(",") if n.strip()):
                get_benchmark(name)  # an unknown name lists the valid ones
        if self.per_device_eval_batch_size < 1:
            raise ValueError(
                f"--per_device_eval_batch_size {self.per_device_eval_batch_size}: give a batch size >= 1."
            )
        if self.max_eval_samples is not None and self.max_eval_samples < 1:
            raise ValueError(
                f"--max_eval_samples {self.max_eval_samples}: give a number of rows >= 1, or leave it out."
            )
        if self.benchmark_data_dir is not None and not os.path.isdir(self.benchmark_data_dir):
            raise ValueError(f"--benchmark_data_dir {self.benchmark_data_dir}: no such folder.")

    def suite_kwargs(self) -> dict:
        """`evaluate_robustness` keyword arguments (`None`: the protocol's value)."""

        def listed(text: str | None, parse) -> list | None:
            return None if text is None else [parse(v.strip()) for v in text.split(",") if v.strip()]

        def steps(value: str) -> int:
            if not value.isdigit():
                raise ValueError(f"--steps {self.steps}: give whole numbers >= 0, comma-separated (e.g. 10,100).")
            return int(value)

        return dict(
            benchmarks=self.benchmarks,
            protocol=self.protocol,
            attacks=listed(self.attacks, str),
            eps=listed(self.eps, lambda v: parse_pixel_value(v, "eps")),
            steps=listed(self.steps, steps),
            step_size=None if self.step_size is None else parse_pixel_value(self.step_size, "step_size"),
            norm=self.norm,
            random_start=self.random_start,
            first_success=self.first_success,
            autoattack=self.autoattack,
            max_eval_samples=self.max_eval_samples,
            logit_scale=self.logit_scale,
            normalization=self.normalization,
            mixed_precision=self.mixed_precision,
            batch_size=self.per_device_eval_batch_size,
            num_workers=self.dataloader_num_workers,
            benchmark_data_dir=self.benchmark_data_dir,
            seed=self.seed,
        )


@dataclass
class EvalModelArguments:
    model_name_or_path: str = field(metadata={"help": "A Hub id or a local checkpoint folder."})
    model_revision: str | None = field(default=None, metadata={"help": "Hub revision of the model."})


@dataclass
class CompareArguments:
    models: str = field(metadata={"help": "name=path_or_hub_id pairs, comma-separated."})


@dataclass
class PushArguments:
    model_dir: str = field(metadata={"help": "Checkpoint folder (save_model / save_pretrained output)."})
    hub_model_id: str = field(metadata={"help": "Target repository, org/name."})
    report_dir: str | None = field(default=None, metadata={"help": "A `pmg-aft eval` report folder for the card."})
    base_model: str | None = field(
        default=None, metadata={"help": "Hub id it was fine-tuned from (default: recorded)."}
    )
    license: str = field(default="mit", metadata={"help": "Licence of the weights."})
    hub_private_repo: bool = field(default=False, metadata={"help": "Create the repository as private."})


@dataclass
class ConvertArguments:
    checkpoint: str = field(metadata={"help": ".pt/.pth/.tar (read with weights_only=True) or .safetensors."})
    base_model: str = field(
        metadata={"help": "The CLIPModel it was fine-tuned from, e.g. openai/clip-vit-base-patch32."}
    )
    output_dir: str = field(metadata={"help": "Folder for the converted model and processor."})
    normalization: str = field(
        default="base",
        metadata={
            "help": "Image mean/std of the saved processor: the base's, ImageNet's (the official PMG-AFT training) "
            "or CLIP's (TeCoA, FARE, TGA-ZSR).",
            "choices": ["base", "imagenet", "clip"],
        },
    )


def parse_command(prog: str, groups: tuple, argv: list[str], description: str) -> tuple:
    """Parse `argv` into the dataclasses `groups`; a flag of an earlier release is a clear error."""
    parser = HfArgumentParser(groups, prog=prog, description=description)
    known = {f"--{a}" for group in groups for a in group.__dataclass_fields__}
    for arg in argv:
        name = arg.split("=", 1)[0]
        option = name[2:].replace("-", "_")
        if name.startswith("--") and f"--{option}" not in known and option in RENAMED_OPTIONS:
            parser.error(f"{name} is now --{RENAMED_OPTIONS[option]}: flags are snake_case, as in pmg-aft train.")
    return parser.parse_args_into_dataclasses(args=join_negative_values(argv))


def eval_command(argv: list[str]) -> int:
    """`pmg-aft eval`: run the evaluation suite and write the report (JSON, Markdown, plots)."""
    model_args, suite = parse_command("pmg-aft eval", (EvalModelArguments, SuiteArguments), argv,
                                      "Robust zero-shot evaluation of a CLIPModel.")  # fmt: skip
    path, revision = model_args.model_name_or_path, model_args.model_revision
    model, processor = load_clip(path, revision=revision)
    report = evaluate_robustness(model, processor, output_dir=suite.output_dir, model_id=path, **suite.suite_kwargs())
    print(report.to_markdown())
    for warning in report.warnings:
        print(f"warning: {warning}")
    card = os.path.join(suite.output_dir, "README.md")
    if not PartialState().is_main_process:
        return 0
    if os.path.isdir(path):  # a local checkpoint: the card `pmg-aft push` would upload with this report
        method, recipe = checkpoint_method(path)
        repo_id = os.path.basename(os.path.abspath(path))
        checkpoint_card(path, repo_id, report, suite.output_dir, method=method, recipe=recipe)[0].save(card)
        print(f"report and model card written to {suite.output_dir}")
    else:
        print(f"report written to {suite.output_dir}")
    return 0


def compare_command(argv: list[str]) -> int:
    """`pmg-aft compare`: several checkpoints, the same suite and settings, one table."""
    args, suite = parse_command("pmg-aft compare", (CompareArguments, SuiteArguments), argv, compare_command.__doc__)
    pairs = [item.split("=", 1) for item in args.models.split(",") if item.strip()]
    if any(len(p) != 2 for p in pairs):
        raise SystemExit(
            "pmg-aft: --models takes name=path pairs, e.g. "
            "pmg_aft=org/pmg-aft-vitb32,clip=openai/clip-vit-base-patch32"
        )
    models = {name: load_clip(path) for name, path in pairs}
    table = compare(models, suite.output_dir, **suite.suite_kwargs())
    print(table)
    return 0


def convert_command(argv: list[str]) -> int:
    """`pmg-aft convert`: released OpenAI-style checkpoints (TeCoA, PMG-AFT, FARE) to a `CLIPModel` folder."""
    (args,) = parse_command("pmg-aft convert", (ConvertArguments,), argv, convert_command.__doc__)
    base, processor = load_clip(args.base_model)
    model = convert_openai_checkpoint(args.checkpoint, base)
    stats = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "clip": (CLIP_MEAN, CLIP_STD)}.get(args.normalization)
    if stats:
        processor.image_processor.image_mean, processor.image_processor.image_std = list(stats[0]), list(stats[1])
    model.save_pretrained(args.output_dir)
    processor.save_pretrained(args.output_dir)
    print(f"converted {args.checkpoint} onto {args.base_model}: {args.output_dir} (load it with "
          "CLIPModel.from_pretrained)")  # fmt: skip
    return 0


def push_command(argv: list[str]) -> int:
    """`pmg-aft push`: upload weights, processor, model card and plots."""
    (args,) = parse_command("pmg-aft push", (PushArguments,), argv, "Publish a checkpoint to the Hugging Face Hub.")
    method, recipe = checkpoint_method(args.model_dir)
    try:
        url = push(args.model_dir, args.hub_model_id, args.report_dir, private=args.hub_private_repo,
                   base_model=args.base_model, license=args.license, method=method, recipe=recipe)  # fmt: skip
    except (RuntimeError, FileNotFoundError) as error:
        print(f"pmg-aft: {error}", file=sys.stderr)
        return 1
    print(f"uploaded to {url}")
    return 0


def checkpoint_method(model_dir: str) -> tuple[MethodInfo | None, dict | None]:
    """The method and recipe a checkpoint folder records: its `pmg_aft.json`, or for a checkpoint saved by pmg_aft
    0.1 the `method` field of its `training_args.json`; `(None, None)` for any other folder (a converted or
    third-party checkpoint, whose card then claims no training method)."""
    info = read_run_info(model_dir)
    if info.get("method"):
        return MethodInfo.from_dict(info["method"]), info.get("recipe")
    path = os.path.join(model_dir, "training_args.json")
    training = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            training = json.load(f)
    if training.get("method") not in TRAINERS:
        return None, None
    trainer = TRAINERS[training["method"]]
    return trainer.method_info, recipe_of(trainer.config_class, training)


def datasets_list(out=None) -> None:
    out = out or sys.stdout
    print(f"{'name':15s} {'hub id':32s} {'split':10s} {'columns':18s} {'classes':>7s}  revision", file=out)
    for b in BENCHMARKS.values():
        count = str(len(b.class_names)) if b.class_names else "data"
        columns = f"{b.image_column},{b.label_column}"
        revision = (b.revision or "not pinned")[:12] + (" (gated)" if b.gated else "")
        hub = b.hub_id or "generated"
        print(f"{b.name:15s} {hub:32s} {b.split:10s} {columns:18s} {count:>7s}  {revision}", file=out)


def protocols_command(argv: list[str]) -> int:
    """`pmg-aft protocols`: every field of each evaluation protocol and where it comes from."""
    for record in PROTOCOL_RECORDS.values():
        print(f"{record.name}: {record.description}")
        for key, value in record.to_dict().items():
            if key not in ("name", "description", "evidence", "overridden"):
                print(f"  {key:18s} {value}")
        print(f"  evidence           {record.evidence}\n")
    return 0


def datasets_download(names: list[str], revision: str | None = None, lock: str | None = None) -> dict[str, str]:
    """Download benchmarks at their pinned (or given) revision; return `{name: resolved commit sha}`."""
    benches = list(BENCHMARKS.values()) if names == ["all"] else [get_benchmark(n) for n in names]
    resolved = {}
    for bench in benches:
        training = {"train"} if bench.name == "tiny-imagenet" else set()
        splits = sorted({bench.split, *bench.splits.values(), *bench.whole_set_splits} | training)
        wanted = revision or bench.revision
        if bench.hub_id is None:
            continue  # generated, nothing to download
        if bench.gated and not get_token():  # say so before anything is downloaded
            raise SystemExit(f"pmg-aft: {unavailable_message(bench, gated=True)}")
        try:
            sha = HfApi().dataset_info(bench.hub_id, revision=wanted).sha
            for split in splits:  # only these splits' files
                print(f"{bench.name}: downloading {bench.hub_id} ({bench.config or 'default'}, {split}) at {sha}")
                hub_split_files(bench, split, sha)  # the split's files into the cache; loads read them offline
        except Exception as error:  # network, gating, missing revision: say which and how to fix
            hint = " It is gated: accept its terms on the Hub and set HF_TOKEN." if bench.gated else ""
            raise SystemExit(f"pmg-aft: could not download {bench.name} ({bench.hub_id}): {error}.{hint}") from error
        resolved[bench.name] = sha
    lock = lock or revisions_file()
    recorded = {}
    if os.path.exists(lock):
        with open(lock, encoding="utf-8") as f:
            recorded = json.load(f)
    os.makedirs(os.path.dirname(os.path.abspath(lock)), exist_ok=True)
    with open(lock, "w", encoding="utf-8") as f:
        json.dump({**recorded, **resolved}, f, indent=1)
    print(f"resolved revisions written to {lock}; load_benchmark and reports use them from now on")
    return resolved


def datasets_command(argv: list[str]) -> int:
    """`pmg-aft datasets list` and `pmg-aft datasets download NAME|all`."""
    parser = argparse.ArgumentParser(prog="pmg-aft datasets")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="list the registered benchmarks")
    download = sub.add_parser("download", help="pre-fetch benchmarks into the Hugging Face cache")
    download.add_argument("names", nargs="+", help="benchmark names, or `all`")
    download.add_argument("--revision", help="a Hub revision instead of the registry's pinned one")
    download.add_argument(
        "--lock", help="JSON file for the resolved commits (default: $PMG_AFT_REVISIONS or ~/.cache/pmg_aft/)"
    )
    args = parser.parse_args(argv)
    if args.action == "list":
        datasets_list()
        return 0
    try:
        datasets_download(args.names, args.revision, args.lock)
    except KeyError as error:
        print(f"pmg-aft: {error.args[0]}", file=sys.stderr)
        return 2
    return 0


def train_command(argv: list[str]) -> int:
    """`pmg-aft train`: the fine-tuning job of examples/finetune.py."""
    finetune(argv)
    return 0


COMMANDS = {"train": train_command, "eval": eval_command, "push": push_command, "convert": convert_command,
            "compare": compare_command, "datasets": datasets_command, "protocols": protocols_command}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `pmg-aft` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"pmg-aft: unknown command {argv[0]!r}.\n\n{USAGE}", file=sys.stderr)
        return 2
    try:
        return command(argv[1:])
    except Exception as error:  # bad input: one line naming the cause and the fix; a bug keeps its traceback
        if not is_input_error(error):
            raise
        print(f"pmg-aft: {error_message(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
