"""The `pmg-aft` command."""

from __future__ import annotations

import argparse
import json
import os
import sys

USAGE = """usage: pmg-aft <command> [options]

commands:
  train                      adversarially fine-tune a CLIP model (flags of examples/finetune.py; --config FILE.yaml)
  datasets list              the registered benchmarks: Hub ids, splits, columns, class counts, prompts
  datasets download NAME|all pre-fetch benchmarks into the Hugging Face cache (for offline compute nodes)
  eval                       clean and robust zero-shot accuracy of any CLIP checkpoint (pmg-aft eval --help)
  push                       upload a checkpoint with its model card and plots to the Hub (pmg-aft push --help)
  compare                    evaluate several models with the same suite into one table (pmg-aft compare --help)
  convert                    an OpenAI-style / open_clip ViT checkpoint to a CLIPModel folder (pmg-aft convert --help)
"""


def _add_suite_arguments(parser: argparse.ArgumentParser) -> None:
    """The evaluation-suite options shared by `pmg-aft eval` and `pmg-aft compare`."""
    parser.add_argument("--benchmarks", default="all", help="`all` or comma-separated names (pmg-aft datasets list)")
    parser.add_argument("--protocol", default="paper", choices=["paper", "clip_benchmark"])
    parser.add_argument("--attack", default="pgd", help="comma-separated: pgd, cw, autoattack")
    parser.add_argument("--eps", default="1/255", help="comma-separated budgets, e.g. 1/255,4/255")
    parser.add_argument("--steps", default="10", help="PGD/CW steps, comma-separated, e.g. 10,100")
    parser.add_argument("--step-size", default=None, help="PGD/CW step size (default 1/255)")
    parser.add_argument("--norm", default="linf", choices=["linf", "l2"])
    parser.add_argument("--max-samples", type=int, default=None, help="first N test samples per dataset")
    parser.add_argument("--batch-size", type=int, default=64, help="per process")
    parser.add_argument("--data-dir", default=None, help="local copies, one sub-folder per benchmark")
    parser.add_argument("--logit-scale", type=float, default=None, help="override the protocol's (1 or 100)")
    parser.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"])
    parser.add_argument("--output", required=True, help="report folder; a rerun resumes finished datasets")


def _suite_kwargs(args: argparse.Namespace) -> dict:
    """`evaluate_robustness` keyword arguments from the shared suite options."""
    from .config import parse_pixel_value

    return dict(
        benchmarks=args.benchmarks,
        protocol=args.protocol,
        attacks=[a.strip() for a in args.attack.split(",") if a.strip()],
        eps=_floats(args.eps),
        steps=[int(s) for s in args.steps.split(",")],
        step_size=parse_pixel_value(args.step_size, "step_size") if args.step_size else None,
        norm=args.norm,
        max_samples=args.max_samples,
        batch_size=args.batch_size,
        data_dir=args.data_dir,
        logit_scale=args.logit_scale,
        mixed_precision=args.mixed_precision,
    )


def compare_command(argv: list[str]) -> int:
    """`pmg-aft compare`: several checkpoints, the same suite and settings, one table."""
    parser = argparse.ArgumentParser(prog="pmg-aft compare", description=compare_command.__doc__)
    parser.add_argument("--models", required=True, help="name=path_or_hub_id pairs, comma-separated")
    _add_suite_arguments(parser)
    args = parser.parse_args(argv)

    from transformers import CLIPModel, CLIPProcessor

    from .evaluation import compare

    pairs = [item.split("=", 1) for item in args.models.split(",") if item.strip()]
    if any(len(p) != 2 for p in pairs):
        parser.error(
            "--models takes name=path pairs, e.g. pmg_aft=org/pmg-aft-vitb32,clip=openai/clip-vit-base-patch32"
        )
    models = {n: (CLIPModel.from_pretrained(p), CLIPProcessor.from_pretrained(p)) for n, p in pairs}
    table = compare(models, args.output, **_suite_kwargs(args))
    print(table)
    return 0


def convert_command(argv: list[str]) -> int:
    """`pmg-aft convert`: released OpenAI-style checkpoints (TeCoA, PMG-AFT, FARE) to a `CLIPModel` folder."""
    parser = argparse.ArgumentParser(prog="pmg-aft convert", description=convert_command.__doc__)
    parser.add_argument(
        "--checkpoint", required=True, help=".pt/.pth/.tar (read with weights_only=True) or .safetensors"
    )
    parser.add_argument(
        "--base", required=True, help="the CLIPModel it was fine-tuned from, e.g. openai/clip-vit-base-patch32"
    )
    parser.add_argument("--output", required=True, help="folder for the converted model and processor")
    parser.add_argument(
        "--normalization", default="base", choices=["base", "imagenet", "clip"],
        help="image mean/std of the saved processor: the base's, ImageNet's (the official TeCoA/PMG-AFT training) "
        "or CLIP's",
    )  # fmt: skip
    args = parser.parse_args(argv)

    from transformers import CLIPModel, CLIPProcessor

    from .convert import convert_openai_checkpoint
    from .zeroshot import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD

    model = convert_openai_checkpoint(args.checkpoint, CLIPModel.from_pretrained(args.base))
    processor = CLIPProcessor.from_pretrained(args.base)
    stats = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "clip": (CLIP_MEAN, CLIP_STD)}.get(args.normalization)
    if stats:
        processor.image_processor.image_mean, processor.image_processor.image_std = list(stats[0]), list(stats[1])
    model.save_pretrained(args.output)
    processor.save_pretrained(args.output)
    print(f"converted {args.checkpoint} onto {args.base}: {args.output} (load it with CLIPModel.from_pretrained)")
    return 0


def _floats(text: str) -> list[float]:
    from .config import parse_pixel_value

    return [parse_pixel_value(v, "eps") for v in text.split(",") if v.strip()]


def eval_command(argv: list[str]) -> int:
    """`pmg-aft eval`: run the evaluation suite and write the report (JSON, Markdown, plots)."""
    parser = argparse.ArgumentParser(prog="pmg-aft eval", description="Robust zero-shot evaluation of a CLIPModel.")
    parser.add_argument("--model", required=True, help="a Hub id or a local checkpoint folder")
    parser.add_argument("--revision", default=None, help="Hub revision of the model")
    _add_suite_arguments(parser)
    args = parser.parse_args(argv)

    from transformers import CLIPModel, CLIPProcessor

    from .evaluation import evaluate_robustness

    model = CLIPModel.from_pretrained(args.model, revision=args.revision)
    processor = CLIPProcessor.from_pretrained(args.model, revision=args.revision)
    report = evaluate_robustness(model, processor, output_dir=args.output, model_id=args.model, **_suite_kwargs(args))
    print(report.to_markdown())
    for warning in report.warnings:
        print(f"warning: {warning}")
    print(f"report written to {args.output}")
    return 0


def push_command(argv: list[str]) -> int:
    """`pmg-aft push`: upload weights, processor, model card and plots."""
    parser = argparse.ArgumentParser(prog="pmg-aft push", description="Publish a checkpoint to the Hugging Face Hub.")
    parser.add_argument("--model", required=True, help="checkpoint folder (save_model / save_pretrained output)")
    parser.add_argument("--repo", required=True, help="target repository, org/name")
    parser.add_argument("--report", default=None, help="folder of a `pmg-aft eval` report to put in the card")
    parser.add_argument("--base-model", default=None, help="Hub id it was fine-tuned from (default: from config)")
    parser.add_argument("--license", default="mit")
    parser.add_argument("--private", action="store_true")
    args = parser.parse_args(argv)

    from .hub import push

    try:
        url = push(args.model, args.repo, args.report, private=args.private, base_model=args.base_model,
                   license=args.license)  # fmt: skip
    except (RuntimeError, FileNotFoundError) as error:
        print(f"pmg-aft: {error}", file=sys.stderr)
        return 1
    print(f"uploaded to {url}")
    return 0


def datasets_list(out=None) -> None:
    from .data.registry import BENCHMARKS

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
    from datasets import load_dataset
    from huggingface_hub import HfApi

    from .data.registry import BENCHMARKS, get_benchmark, revisions_file

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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `pmg-aft` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "train":
        from .finetune import main as finetune

        finetune(rest)
        return 0
    if command == "eval":
        return eval_command(rest)
    if command == "push":
        return push_command(rest)
    if command == "convert":
        return convert_command(rest)
    if command == "compare":
        return compare_command(rest)
    if command == "datasets":
        parser = argparse.ArgumentParser(prog="pmg-aft datasets")
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="list the registered benchmarks")
        download = sub.add_parser("download", help="pre-fetch benchmarks into the Hugging Face cache")
        download.add_argument("names", nargs="+", help="benchmark names, or `all`")
        download.add_argument("--revision", help="a Hub revision instead of the registry's pinned one")
        download.add_argument(
            "--lock", help="JSON file for the resolved commits (default: $PMG_AFT_REVISIONS or ~/.cache/pmg_aft/)"
        )
        args = parser.parse_args(rest)
        if args.action == "list":
            datasets_list()
        else:
            try:
                datasets_download(args.names, args.revision, args.lock)
            except KeyError as error:
                print(f"pmg-aft: {error.args[0]}", file=sys.stderr)
                return 2
        return 0
    print(f"pmg-aft: unknown command {command!r}.\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
