import pytest
import torch
import torch.nn.functional as F

from pmg_aft import AttackGrid, AttackSetting, margin_loss, pgd

from .utils import accuracy, pmg_aft_head


@pytest.fixture
def classifier(model, tokenizer, test_set):
    return pmg_aft_head(model, tokenizer, test_set.features["label"].names)


@pytest.mark.parametrize("norm,eps", [("linf", 4 / 255), ("l2", 0.5)])
def test_pgd_stays_in_eps_ball_and_in_unit_box(classifier, batch, norm, eps):
    x, y = batch["pixel_values"], batch["labels"]
    adv = pgd(classifier, x, y, eps=eps, step_size=eps / 2, steps=5, norm=norm)
    delta = (adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps + 1e-6).all()
    assert adv.min() >= 0 and adv.max() <= 1
    assert size.max() > eps / 4  # it actually moved
    assert not adv.requires_grad


@pytest.mark.parametrize("loss", ["ce", "cw"])
def test_pgd_raises_the_loss_and_lowers_accuracy(classifier, batch, loss):
    x, y = batch["pixel_values"], batch["labels"]
    with torch.no_grad():
        clean_logits = classifier(x)
    adv = pgd(classifier, x, y, eps=4 / 255, step_size=1 / 255, steps=10, loss=loss)
    with torch.no_grad():
        adv_logits = classifier(adv)
    objective = F.cross_entropy if loss == "ce" else lambda z, t: margin_loss(z, t).mean()
    assert objective(adv_logits, y) > objective(clean_logits, y)
    assert accuracy(clean_logits, y) > 0.5  # the pre-trained tiny model is a real classifier
    assert accuracy(adv_logits, y) < accuracy(clean_logits, y) - 0.2


def test_pgd_without_random_start_is_deterministic(classifier, batch):
    x, y = batch["pixel_values"], batch["labels"]
    a = pgd(classifier, x, y, eps=2 / 255, step_size=1 / 255, steps=3, random_start=False)
    b = pgd(classifier, x, y, eps=2 / 255, step_size=1 / 255, steps=3, random_start=False)
    assert torch.equal(a, b)
    c = pgd(classifier, x, y, eps=2 / 255, step_size=1 / 255, steps=3, random_start=True)
    assert not torch.equal(a, c)


def test_zero_steps_without_random_start_returns_the_images(classifier, batch):
    x, y = batch["pixel_values"], batch["labels"]
    assert torch.equal(pgd(classifier, x, y, eps=4 / 255, step_size=1 / 255, steps=0, random_start=False), x)


def test_pgd_accumulates_no_parameter_gradients(classifier, batch):
    pgd(classifier, batch["pixel_values"], batch["labels"], eps=1 / 255, step_size=1 / 255, steps=2)
    assert all(p.grad is None for p in classifier.parameters())


def test_margin_loss_by_hand():
    logits = torch.tensor([[2.0, 1.0, 0.5], [0.1, 0.3, 0.9]])
    labels = torch.tensor([0, 1])
    assert margin_loss(logits, labels).tolist() == pytest.approx([1.0 - 2.0, 0.9 - 0.3])


def test_bad_budgets_and_inputs_are_clear_errors(classifier, batch):
    x, y = batch["pixel_values"], batch["labels"]
    with pytest.raises(ValueError, match=r"Did you mean 4/255"):
        pgd(classifier, x, y, eps=4, step_size=1 / 255, steps=1)
    with pytest.warns(UserWarning, match=r"did you mean 1/255"):
        pgd(classifier, x, y, eps=1, step_size=1 / 255, steps=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pgd(classifier, x * 255, y, eps=1 / 255, step_size=1 / 255, steps=1)
    with pytest.raises(ValueError, match="norm"):
        pgd(classifier, x, y, eps=1 / 255, step_size=1 / 255, steps=1, norm="l1")
    with pytest.raises(ValueError, match="labels"):
        pgd(classifier, x, y[:-1], eps=1 / 255, step_size=1 / 255, steps=1)


def test_fp16_attack_gradients_do_not_underflow():
    """Tiny input gradients are 0 in an fp16 backward pass; the attack scales its loss so every pixel still moves."""
    torch.manual_seed(0)
    layers = torch.nn.Sequential(*[torch.nn.Linear(16, 16, bias=False) for _ in range(3)])
    for layer in layers:
        torch.nn.init.normal_(layer.weight, std=2e-4)

    def classifier(x):
        return layers(x.flatten(1))

    x, y = torch.rand(8, 1, 4, 4), torch.randint(0, 16, (8,))
    with torch.autocast("cpu", dtype=torch.float16):
        delta = torch.zeros_like(x, requires_grad=True)
        raw = F.cross_entropy(classifier(x + delta).float(), y, reduction="sum")
        (grad,) = torch.autograd.grad(raw, delta)
        assert (grad == 0).all()  # the trap: an unscaled fp16 backward loses every gradient
        adv = pgd(classifier, x, y, eps=1 / 255, step_size=1 / 255, steps=1, random_start=False)
    moved = ((adv - x).abs() > 0.5 / 255) | (x == 0) | (x == 1)
    assert moved.float().mean() > 0.95


def test_first_success_keeps_the_first_success_so_more_steps_never_help(classifier, batch):
    x, y = batch["pixel_values"], batch["labels"]
    robust = []
    for steps in (1, 3, 10):
        adv = pgd(classifier, x, y, eps=2 / 255, step_size=0.5 / 255, steps=steps, random_start=False,
                  first_success=True)  # fmt: skip
        with torch.no_grad():
            robust.append(classifier(adv).argmax(-1) == y)
    assert (robust[1] <= robust[0]).all() and (robust[2] <= robust[1]).all()  # per sample, not just on average
    assert robust[2].sum() < robust[0].sum()


def test_attack_settings_have_one_key_format():
    assert AttackSetting(attack="pgd", eps=1 / 255, steps=10).key == "pgd-10@1/255"
    assert AttackSetting(attack="cw", eps=4 / 255, steps=100, random_start=True).key == "cw-100-rs@4/255"
    last = AttackSetting(attack="pgd", eps=1 / 255, steps=2, first_success=False, momentum=0.9)
    assert last.key == "pgd-2-last-m0.9@1/255"
    assert AttackSetting(attack="pgd", eps=2 / 255, steps=10, step_size=0.5 / 255).key == "pgd-10-step0.5/255@2/255"
    assert AttackSetting(attack="pgd", eps=0.5, steps=10, step_size=0.1, norm="l2").key == "pgd-l2-10-step0.1@0.5"
    aa = AttackSetting(attack="autoattack", eps=1 / 255, steps=50, step_size=0.3, random_start=True)
    assert aa.key == "autoattack@1/255" and (aa.steps, aa.step_size, aa.random_start) == (None, None, False)
    # Objects, not strings: they survive JSON and compare as values; settings that differ never share a key.
    setting = AttackSetting(attack="pgd", eps=1 / 255, steps=10, random_start=True)
    assert AttackSetting.from_dict(setting.to_dict()) == setting
    changes = ({}, {"random_start": True}, {"first_success": False}, {"momentum": 0.5}, {"step_size": 2 / 255})
    variants = [AttackSetting(attack="pgd", eps=1 / 255, steps=10, **change) for change in changes]
    assert len({v.key for v in variants}) == len(variants)
    assert setting.pgd_kwargs() == dict(eps=1 / 255, step_size=1 / 255, steps=10, norm="linf", random_start=True,
                                        loss="ce", first_success=True, momentum=0.0)  # fmt: skip
    assert "uniform random start" in setting.describe() and "first success kept" in setting.describe()


def test_attack_settings_are_validated():
    with pytest.raises(ValueError, match="attack='fgsm': attack must be one of pgd, cw, autoattack"):
        AttackSetting(attack="fgsm", eps=1 / 255)
    with pytest.raises(ValueError, match="Did you mean 8/255"):
        AttackSetting(attack="pgd", eps=8, steps=10)
    with pytest.raises(ValueError, match=r"steps=-1: steps must be a whole number in \[1, 100000\]"):
        AttackSetting(attack="pgd", eps=1 / 255, steps=-1)
    with pytest.raises(ValueError, match="momentum"):
        AttackSetting(attack="pgd", eps=1 / 255, steps=1, momentum=1.0)
    grid = AttackGrid(attacks=("pgd", "autoattack"), eps=(1 / 255, 2 / 255), steps=(10, 100), random_start=False,
                      first_success=True)  # fmt: skip
    keys = [s.key for s in grid.settings()]
    assert keys == ["pgd-10@1/255", "pgd-100@1/255", "pgd-10@2/255", "pgd-100@2/255", "autoattack@1/255",
                    "autoattack@2/255"]  # fmt: skip
    # The command line's comma-separated forms are the same grid.
    assert AttackGrid(attacks="pgd,autoattack", eps="1/255,2/255", steps="10,100", random_start=False,
                      first_success=True) == grid  # fmt: skip
    with pytest.raises(ValueError, match=r"--steps 10,x: give whole numbers >= 1"):
        AttackGrid(steps="10,x")
    with pytest.raises(ValueError, match=r"attacks=\['pgd', 'fgsm'\]: attacks must be one of"):
        AttackGrid(attacks="pgd,fgsm")
    with pytest.raises(TypeError):
        AttackSetting("pgd", 1 / 255, 10)  # keyword-only: eps and steps cannot be swapped by position


def reference_first_success_pgd(classifier, x, y, eps, step_size, steps):
    """The first-success rule written without dropping samples: every sample forwarded at every step."""
    delta = torch.zeros_like(x)
    active = torch.ones(len(x), dtype=torch.bool)
    for _ in range(steps):
        delta.requires_grad_(True)
        logits = classifier(x + delta)
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), delta)
        with torch.no_grad():
            active &= logits.argmax(-1) == y
            step = (x + (delta + step_size * grad.sign()).clamp(-eps, eps)).clamp(0, 1) - x
            delta = torch.where(active.view(-1, 1, 1, 1), step, delta).detach()
    return x + delta


def test_first_success_forwards_only_the_samples_still_classified_correctly(classifier, batch):
    x, y = batch["pixel_values"], batch["labels"]
    sizes = []

    def counting(images):
        sizes.append(len(images))
        return classifier(images)

    adv, survived = pgd(counting, x, y, eps=4 / 255, step_size=1 / 255, steps=10, random_start=False,
                        first_success=True, return_survivors=True)  # fmt: skip
    assert sizes[0] == len(x) and sizes == sorted(sizes, reverse=True) and sizes[-1] < len(x) / 2  # the batch shrank
    expected = reference_first_success_pgd(classifier, x, y, eps=4 / 255, step_size=1 / 255, steps=10)
    with torch.no_grad():
        ours, theirs = classifier(adv).argmax(-1), classifier(expected).argmax(-1)
    same = (adv - expected).flatten(1).abs().amax(1) < 1e-6
    assert same.float().mean() >= 0.95  # the same iterates; only float summation order across batch sizes differs
    assert (ours == theirs).float().mean() >= 0.97
    # First success kept: a sample counts as robust exactly when its returned image is still classified correctly.
    assert torch.equal(survived, ours == y)


def test_a_misshapen_start_is_refused_whatever_the_start(classifier, batch):
    x, y = batch["pixel_values"], batch["labels"]
    for random_start in (True, False):
        with pytest.raises(ValueError, match="start must be L-inf noise shaped like the images"):
            pgd(classifier, x, y, eps=1 / 255, step_size=1 / 255, steps=1, random_start=random_start,
                start=torch.zeros(1, 3, 2, 2))  # fmt: skip
