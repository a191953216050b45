"""`attack_numerics`: the exact attack (summed loss, scaled fp16 backward, float32 logits) and the official
evaluations' numerics (fp16 autocast, batch-mean loss, unscaled backward, fp16 logits, the official test batch), with
the first step's zero input-gradient fraction reported either way."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pmg_aft import IMAGENET_MEAN, IMAGENET_STD, clip_processor, pgd
from pmg_aft.attacks import loss_gradient
from pmg_aft.evaluation import EvalLoader, EvalSet, evaluate_robustness, get_protocol
from pmg_aft.evaluation import suite as suite_module
from pmg_aft.evaluation.checks import sanity_warnings
from pmg_aft.evaluation.engine import autocast, effective_precision
from pmg_aft.zeroshot import ZeroShotClassifier


class Linear(nn.Module):
    """Logits linear in the pixels, with per-pixel weights of size `weight` (small ones: small input gradients)."""

    def __init__(self, weight: float, classes: int = 3, pixels: int = 3 * 8 * 8):
        super().__init__()
        self.w = nn.Parameter(weight * torch.randn(pixels, classes, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        return x.flatten(1) @ self.w


def data(batch: int = 64):
    generator = torch.Generator().manual_seed(1)
    return torch.rand(batch, 3, 8, 8, generator=generator), torch.randint(0, 3, (batch,), generator=generator)


def test_the_batch_mean_gradient_is_the_summed_one_over_the_batch_size():
    x, y = data(16)
    model = Linear(1e-2)
    delta = torch.zeros_like(x)
    objective = lambda logits, labels: F.cross_entropy(logits, labels, reduction="none")  # noqa: E731
    summed, _ = loss_gradient(model, objective, x, delta, y, "sum")
    mean, _ = loss_gradient(model, objective, x, delta, y, "mean", loss_scaling=False)
    torch.testing.assert_close(mean * 16, summed)
    with pytest.raises(ValueError, match="reduction='avg'"):
        pgd(model, x, y, eps=1 / 255, step_size=1 / 255, steps=1, reduction="avg")


def test_an_unscaled_fp16_batch_mean_backward_underflows_where_the_exact_one_does_not():
    """Per-pixel gradients of ~1e-8 (below fp16's smallest subnormal, 6e-8): the official numerics lose most entries
    to 0, and the attack stalls on them; the exact numerics (summed, scaled by 2**12) keep every one."""
    x, y = data(64)
    model = Linear(1e-6)
    fractions, moved = {}, {}
    for numerics in ("exact", "official"):
        stats = {}
        with autocast(x.device, "fp16", "official"):  # fp16 autocast on the CPU too, for both
            adversarial = pgd(model, x, y, eps=4 / 255, step_size=1 / 255, steps=1, random_start=False,
                              reduction="mean" if numerics == "official" else "sum",
                              loss_scaling=numerics == "exact", gradient_stats=stats)  # fmt: skip
        assert stats["entries"] == x.numel()
        fractions[numerics] = stats["zero_entries"] / stats["entries"]
        moved[numerics] = (adversarial != x).float().mean().item()
    # (The exact run's few zeros are weights of ~1e-7 that are 0 in fp16 themselves.)
    assert fractions["exact"] < 0.01 and fractions["official"] > 0.5
    assert moved["exact"] > 0.9 and moved["official"] < 0.5  # sign(0) leaves those pixels where they were


def test_official_numerics_keep_fp16_on_a_cpu_and_leave_logits_to_autocast(model, tokenizer):
    assert effective_precision("fp16", torch.device("cpu")) == "no"  # exact: the protocol's fp16 is CUDA-only
    assert effective_precision("fp16", torch.device("cpu"), "official") == "fp16"
    x = torch.rand(2, 3, 32, 32)
    dtypes = {}
    for float32_logits in (True, False):
        classifier = ZeroShotClassifier(model, tokenizer, ["red", "green"], image_mean=IMAGENET_MEAN,
                                        image_std=IMAGENET_STD, float32_logits=float32_logits)  # fmt: skip
        with torch.no_grad(), autocast(x.device, "fp16", "official"):
            dtypes[float32_logits] = classifier(x).dtype
    assert dtypes == {True: torch.float32, False: torch.float16}


def test_the_suite_runs_the_official_numerics_at_the_official_batch_and_says_so(model, tokenizer, test_set,
                                                                                  monkeypatch):  # fmt: skip
    processor = clip_processor(tokenizer, model, IMAGENET_MEAN, IMAGENET_STD)
    data = EvalSet.from_dataset("patches", test_set.select(range(24)), native_resolution=True)
    batches, run = [], suite_module.evaluate_dataset

    def spy(*args, **kwargs):
        batches.append((kwargs["loader"].batch_size, kwargs["precision"], kwargs["numerics"]))
        return run(*args, **kwargs)

    monkeypatch.setattr(suite_module, "evaluate_dataset", spy)
    reports = {}
    for numerics in ("exact", "official"):
        protocol = get_protocol("pmg_aft").override(steps=2, attack_numerics=numerics)
        reports[numerics] = evaluate_robustness(model, processor, protocol, datasets={"patches": data},
                                                loader=EvalLoader(batch_size=8))  # fmt: skip
    assert batches == [(8, "no", "exact"), (256, "fp16", "official")]  # PMG-AFT's --batch_size 256
    exact, official = reports["exact"], reports["official"]
    assert exact.mixed_precision == "no" and official.mixed_precision == "fp16"  # fp16 kept on this CPU
    assert "official attack numerics (batch-mean loss, unscaled fp16 backward" in official.to_markdown()
    assert "test batch 256" in official.to_markdown() and "official" not in exact.to_markdown().split(".")[0]
    key = exact.settings[0].key
    assert exact.results["patches"].first_step_zero_gradient == {key: 0.0}
    assert (
        f"`{key}`: PGD-2" in exact.to_markdown()
        and "first-step zero input-gradient entries: 0.00%" in exact.to_markdown()
    )
    assert 0.0 <= official.results["patches"].first_step_zero_gradient[key] <= 1.0
    assert official.fingerprint() != exact.fingerprint()  # a cached exact result is not reused for official
    assert official.overrides == ["attack_numerics", "steps"]


def test_a_blind_first_step_is_warned_about(model, tokenizer, test_set):
    processor = clip_processor(tokenizer, model, IMAGENET_MEAN, IMAGENET_STD)
    data = EvalSet.from_dataset("patches", test_set.select(range(8)), native_resolution=True)
    report = evaluate_robustness(model, processor, get_protocol("pmg_aft").override(steps=1, mixed_precision="no"),
                                 datasets={"patches": data})  # fmt: skip
    assert not any("exactly 0" in w for w in report.warnings)
    key = report.settings[0].key
    report.results["patches"].first_step_zero_gradient = {key: 0.3}
    assert any(f"30.0% of the input-gradient entries at the first step of {key} are exactly 0" in w
               for w in sanity_warnings(report))  # fmt: skip
    assert "first-step zero input-gradient entries: 30.00%" in report.to_markdown()  # shown on every run
