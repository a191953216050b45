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
"""


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
