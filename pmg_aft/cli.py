"""The `pmg-aft` command. Every subcommand parses snake_case flags with `HfArgumentParser`, as `pmg-aft train` does."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field

from datasets import load_dataset
from huggingface_hub import HfApi
from transformers import CLIPModel, CLIPProcessor, HfArgumentParser

from .attacks import parse_pixel_value
from .constants import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    NORMS,
    RENAMED_OPTIONS,
    RUN_INFO_FILE,
)
from .convert import convert_openai_checkpoint
from .data import BENCHMARKS, get_benchmark
from .data.registry import revisions_file
from .evaluation import compare, evaluate_robustness
from .finetune import main as finetune
from .hub import push
from .trainers import TRAINERS
from .trainers.base_trainer import recipe_of

USAGE = """usage: pmg-aft <command> [options]

commands:
  train                      robust fine-tuning of a CLIP model (--method pmg_aft|tecoa|fare|tga_zsr|clean;
                             the flags of examples/finetune.py; --config FILE.yaml)
  datasets list              the registered benchmarks: Hub ids, splits, columns, class counts, prompts
  datasets download NAME|all pre-fetch benchmarks into the Hugging Face cache (for offline compute nodes)
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
        default="paper", metadata={"help": "Prompts and logit scale.", "choices": ["paper", "clip_benchmark"]}
    )
    attacks: str = field(default="pgd", metadata={"help": "Comma-separated: pgd, cw, autoattack."})
    eps: str = field(default="1/255", metadata={"help": "Comma-separated budgets, e.g. 1/255,4/255."})
    steps: str = field(default="10", metadata={"help": "PGD/CW steps, comma-separated, e.g. 10,100."})
    step_size: str = field(default="1/255", metadata={"help": "PGD/CW step size."})
    norm: str = field(default="linf", metadata={"help": "Threat model.", "choices": list(NORMS)})
    max_eval_samples: int | None = field(default=None, metadata={"help": "The first N test samples per dataset."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Batch size per process."})
    benchmark_data_dir: str | None = field(default=None, metadata={"help": "Local copies, one sub-folder each."})
    logit_scale: float | None = field(default=None, metadata={"help": "Override the protocol's (1 or 100)."})
    mixed_precision: str = field(
        default="no", metadata={"help": "Forward-pass precision.", "choices": ["no", "bf16", "fp16"]}
    )
    seed: int = field(default=0, metadata={"help": "AutoAttack's seed."})

    def suite_kwargs(self) -> dict:
        """`evaluate_robustness` keyword arguments."""

        def numbers(text: str, name: str) -> list[float]:
            return [parse_pixel_value(v, name) for v in text.split(",") if v.strip()]

        return dict(
            benchmarks=self.benchmarks,
            protocol=self.protocol,
            attacks=[a.strip() for a in self.attacks.split(",") if a.strip()],
            eps=numbers(self.eps, "eps"),
            steps=[int(s) for s in self.steps.split(",") if s.strip()],
            step_size=parse_pixel_value(self.step_size, "step_size"),
            norm=self.norm,
            max_eval_samples=self.max_eval_samples,
            batch_size=self.per_device_eval_batch_size,
            benchmark_data_dir=self.benchmark_data_dir,
            logit_scale=self.logit_scale,
            mixed_precision=self.mixed_precision,
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
    return parser.parse_args_into_dataclasses(args=argv)


def eval_command(argv: list[str]) -> int:
    """`pmg-aft eval`: run the evaluation suite and write the report (JSON, Markdown, plots)."""
    model_args, suite = parse_command("pmg-aft eval", (EvalModelArguments, SuiteArguments), argv,
                                      "Robust zero-shot evaluation of a CLIPModel.")  # fmt: skip
    path, revision = model_args.model_name_or_path, model_args.model_revision
    model = CLIPModel.from_pretrained(path, revision=revision)
    processor = CLIPProcessor.from_pretrained(path, revision=revision)
    report = evaluate_robustness(model, processor, output_dir=suite.output_dir, model_id=path, **suite.suite_kwargs())
    print(report.to_markdown())
    for warning in report.warnings:
        print(f"warning: {warning}")
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
    models = {n: (CLIPModel.from_pretrained(p), CLIPProcessor.from_pretrained(p)) for n, p in pairs}
    table = compare(models, suite.output_dir, **suite.suite_kwargs())
    print(table)
    return 0


def convert_command(argv: list[str]) -> int:
    """`pmg-aft convert`: released OpenAI-style checkpoints (TeCoA, PMG-AFT, FARE) to a `CLIPModel` folder."""
    (args,) = parse_command("pmg-aft convert", (ConvertArguments,), argv, convert_command.__doc__)
    model = convert_openai_checkpoint(args.checkpoint, CLIPModel.from_pretrained(args.base_model))
    processor = CLIPProcessor.from_pretrained(args.base_model)
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
    method, recipe = legacy_method(args.model_dir)
    try:
        url = push(args.model_dir, args.hub_model_id, args.report_dir, private=args.hub_private_repo,
                   base_model=args.base_model, license=args.license, method=method, recipe=recipe)  # fmt: skip
    except (RuntimeError, FileNotFoundError) as error:
        print(f"pmg-aft: {error}", file=sys.stderr)
        return 1
    print(f"uploaded to {url}")
    return 0


def legacy_method(model_dir: str):
    """The method and recipe of a checkpoint saved by pmg_aft 0.1 (its `training_args.json` has a `method` field and
    its `pmg_aft.json` none); `(None, None)` for any other folder."""

    def read(name: str) -> dict:
        path = os.path.join(model_dir, name)
        if not os.path.exists(path):
            return {}
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    training = read("training_args.json")
    if read(RUN_INFO_FILE).get("method") or training.get("method") not in TRAINERS:
        return None, None
    trainer = TRAINERS[training["method"]]
    return trainer.method_info, recipe_of(trainer.config_class, training, trainer.unused_fields)


def datasets_list(out=None) -> None:
    out = out or sys.stdout
    print(
        f"{'name':15s} {'hub id':34s} {'split':11s} {'columns':18s} {'classes':>7s}  {'res':6s} paper prompt", file=out
    )
    for b in BENCHMARKS.values():
        count = str(len(b.class_names)) if b.class_names else "data"
        columns = f"{b.image_column},{b.label_column}"
        resolution = "native" if b.native_resolution else "224"
        print(
            f"{b.name:15s} {b.hub_id:34s} {b.split:11s} {columns:18s} {count:>7s}  {resolution:6s} "
            f"{b.paper_templates[0]}",
            file=out,
        )


def datasets_download(names: list[str], revision: str | None = None, lock: str | None = None) -> dict[str, str]:
    """Download benchmarks at their pinned (or given) revision; return `{name: resolved commit sha}`."""
    benches = list(BENCHMARKS.values()) if names == ["all"] else [get_benchmark(n) for n in names]
    resolved = {}
    for bench in benches:
        splits = sorted(
            {bench.split, *bench.splits.values()} | ({"train"} if bench.name == "tiny-imagenet" else set())
        )
        wanted = revision or bench.revision
        try:
            sha = HfApi().dataset_info(bench.hub_id, revision=wanted).sha
            for split in splits:
                print(f"{bench.name}: downloading {bench.hub_id} ({bench.config or 'default'}, {split}) at {sha}")
                load_dataset(bench.hub_id, bench.config, split=split, revision=sha)
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
            "compare": compare_command, "datasets": datasets_command}  # fmt: skip


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
    return command(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
