"""How mixed precision changes what a 1/255 attack sees, and whether fp16 attack gradients underflow.

For random images x and a random sign perturbation d of size eps, prints the relative error of the image-embedding
change E(x + d) - E(x) under bf16 and fp16 autocast against fp32, and the share of exactly-zero input gradients of
the attack loss in fp16 without and with the attack's loss scaling (a zero gradient stalls a signed PGD step), and
how often the signed gradient under bf16 / fp16 agrees with fp32's (what an L-inf PGD step uses).

    python benchmarks/attack_precision.py --model vit-b-32 --batch_size 8
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F
from transformers import CLIPModel

from pmg_aft import IMAGENET_MEAN, IMAGENET_STD, ZeroShotClassifier
from pmg_aft.attacks import FP16_ATTACK_SCALE

sys.path.insert(0, os.path.dirname(__file__))
from common import build_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="tiny, vit-b-32, vit-b-16 or vit-l-14")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--eps", type=float, default=1 / 255)
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = CLIPModel(build_config(args.model)).to(device).eval()
    size = model.config.vision_config.image_size
    embeddings = F.normalize(torch.randn(args.classes, model.config.projection_dim, device=device), dim=-1)
    head = ZeroShotClassifier(model, class_embeddings=embeddings, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD,
                              logit_scale=1.0)  # fmt: skip
    x = torch.rand(args.batch_size, 3, size, size, device=device)
    d = args.eps * torch.randn_like(x).sign()
    y = torch.randint(0, args.classes, (args.batch_size,), device=device)

    def change(dtype):
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            return (head.encode_images((x + d).clamp(0, 1)) - head.encode_images(x)).float()

    exact = change(None)
    print(f"model {args.model}, batch {args.batch_size}, eps {args.eps * 255:g}/255, on {device.type}")
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        error = (change(dtype) - exact).norm() / exact.norm()
        print(f"{name}: relative error of the embedding change caused by the perturbation  {error:.1%}")

    def attack_gradient(dtype, scale=1.0):
        delta = torch.zeros_like(x, requires_grad=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.cross_entropy(head(x + delta), y, reduction="sum") * scale
        return torch.autograd.grad(loss, delta)[0]

    exact_grad = attack_gradient(None)
    for name, dtype, scale in (("bf16", torch.bfloat16, 1.0), ("fp16", torch.float16, FP16_ATTACK_SCALE)):
        grad = attack_gradient(dtype, scale)
        agree = (grad.sign() == exact_grad.sign()).float().mean()
        cosine = F.cosine_similarity(grad.flatten(), exact_grad.flatten(), dim=0)
        print(f"{name}: attack gradient sign agreement with fp32 {agree:.1%}, cosine {cosine:.3f}")

    for scale in (1.0, FP16_ATTACK_SCALE):
        delta = torch.zeros_like(x, requires_grad=True)
        with torch.autocast(device.type, dtype=torch.float16):
            loss = F.cross_entropy(head(x + delta), y, reduction="sum") * scale
        (grad,) = torch.autograd.grad(loss, delta)
        print(f"fp16 attack gradient, loss scale {scale:g}: {(grad == 0).float().mean():.2%} of entries exactly 0, "
              f"median |grad| {grad.abs().median() / scale:.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
