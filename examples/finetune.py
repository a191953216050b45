"""Robust fine-tuning of a CLIP model: PMG-AFT by default, or --method tecoa|fare|tga_zsr|clean (a thin wrapper over
`pmg_aft.finetune`).

Offline demo (tiny CLIP, generated images, about a minute on a CPU):

    python examples/finetune.py --config examples/configs/tiny_offline.yaml

The paper's recipe (CLIP ViT-B/32 on Tiny-ImageNet), on one or many GPUs:

    accelerate launch examples/finetune.py --config examples/configs/pmg_aft_vitb32_tinyimagenet.yaml

Flags override the config file, e.g. `--train_eps 2/255 --output_dir runs/eps2`. `--method NAME --help` lists that
method's flags.
"""

import sys

from pmg_aft.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
