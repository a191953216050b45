"""Train several methods with the same data, attack and budget, evaluate them with the same suite: one table.

Offline on the tiny default (a few minutes on a CPU), every registered method with one data set, attack and budget:

    python examples/compare_methods.py --output_dir outputs/compare

With real models, train each method with its config (examples/configs/*.yaml), or import published checkpoints
(pmg-aft zoo import), then put the folders in one leaderboard:

    pmg-aft leaderboard --models clip=openai/clip-vit-base-patch32,tecoa=outputs/tecoa,pmg_aft=outputs/pmg-aft \\
        --protocols pmg_aft --benchmarks all --attacks pgd --eps 1/255 --steps 10 --output_dir eval/compare
"""

from __future__ import annotations

import argparse
import os

from transformers import CLIPModel, CLIPProcessor

from pmg_aft import TRAINERS
from pmg_aft.evaluation import compare, get_protocol
from pmg_aft.finetune import main as finetune

CONFIG = os.path.join(os.path.dirname(__file__), "configs", "tiny_offline.yaml")


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(TRAINERS))
    parser.add_argument("--output_dir", default="outputs/compare")
    parser.add_argument("--max_steps", type=int, default=-1, help="per method (default: the config's epochs)")
    args = parser.parse_args(argv)
    models = {}
    for method in args.methods.split(","):
        folder = os.path.join(args.output_dir, "models", method)  # the reports go to OUTPUT_DIR/<method>/<protocol>
        finetune(["--config", CONFIG, "--method", method, "--output_dir", folder, "--max_steps", str(args.max_steps),
                  "--eval_on_start", "false", "--do_eval", "false", "--disable_tqdm", "true"])  # fmt: skip
        models[method] = (CLIPModel.from_pretrained(folder), CLIPProcessor.from_pretrained(folder))
    # The official PMG-AFT protocol on the generated toy benchmark, at the demo's larger budget.
    protocol = get_protocol("pmg_aft").override(attacks=("pgd", "cw"), eps=(4 / 255,))
    table = compare(models, args.output_dir, protocol=protocol, benchmarks="colour-patches")
    print(table)
    return table


if __name__ == "__main__":
    main()
