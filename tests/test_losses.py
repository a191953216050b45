import math

import pytest
import torch

from pmg_aft import kl_divergence, pmg_aft_loss, tecoa_loss


def softmax_rows(logits):
    rows = []
    for row in logits.tolist():
        exps = [math.exp(v) for v in row]
        rows.append([e / sum(exps) for e in exps])
    return rows


def kl_by_hand(p_logits, q_logits):
    """Batch-mean KL(P || Q), written out with Python floats."""
    total = 0.0
    for p, q in zip(softmax_rows(p_logits), softmax_rows(q_logits)):
        total += sum(pc * (math.log(pc) - math.log(qc)) for pc, qc in zip(p, q))
    return total / len(p_logits)


def ce_by_hand(logits, labels):
    probs = softmax_rows(logits)
    return -sum(math.log(p[y]) for p, y in zip(probs, labels.tolist())) / len(probs)


ADV = torch.tensor([[0.3, -0.2, 0.1], [0.05, 0.4, -0.3]])
CLEAN = torch.tensor([[0.5, -0.4, 0.0], [-0.1, 0.6, -0.2]])
REF = torch.tensor([[0.2, 0.1, -0.1], [0.0, 0.2, 0.1]])
LABELS = torch.tensor([0, 1])


def test_kl_divergence_is_batch_mean_kl_p_q():
    assert kl_divergence(REF, ADV).item() == pytest.approx(kl_by_hand(REF, ADV), rel=1e-5)
    assert kl_divergence(REF, ADV).item() != pytest.approx(kl_divergence(ADV, REF).item(), rel=1e-3)
    assert kl_divergence(ADV, ADV).item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("alpha,beta", [(256.0, 256.0), (1.0, 3.0)])
def test_pmg_aft_loss_official_direction_matches_hand_formula(alpha, beta):
    out = pmg_aft_loss(ADV, LABELS, CLEAN, REF, alpha=alpha, beta=beta)
    ce = ce_by_hand(ADV, LABELS)
    guidance = kl_by_hand(REF, ADV)  # KL(p_0(x') || p_t(x'))
    clean = kl_by_hand(CLEAN, ADV)  # KL(p_t(x) || p_t(x'))
    assert out.ce.item() == pytest.approx(ce, rel=1e-5)
    assert out.guidance_kl.item() == pytest.approx(guidance, rel=1e-5)
    assert out.clean_kl.item() == pytest.approx(clean, rel=1e-5)
    assert out.loss.item() == pytest.approx(ce + alpha * guidance + beta * clean, rel=1e-5)


def test_pmg_aft_loss_early_direction_swaps_both_kls():
    out = pmg_aft_loss(ADV, LABELS, CLEAN, REF, alpha=256, beta=256, kl_direction="early")
    expected = ce_by_hand(ADV, LABELS) + 256 * kl_by_hand(ADV, REF) + 256 * kl_by_hand(ADV, CLEAN)
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    official = pmg_aft_loss(ADV, LABELS, CLEAN, REF, alpha=256, beta=256)
    assert out.loss.item() != pytest.approx(official.loss.item(), rel=1e-4)


def test_summed_kl_at_batch_256_equals_batch_mean_with_weight_256():
    torch.manual_seed(0)
    adv, ref = torch.randn(256, 10), torch.randn(256, 10)
    summed = torch.nn.functional.kl_div(adv.log_softmax(-1), ref.softmax(-1), reduction="sum")
    ours = pmg_aft_loss(adv, torch.zeros(256, dtype=torch.long), None, ref, alpha=256, beta=0)
    assert (ours.loss - ours.ce).item() == pytest.approx(summed.item(), rel=1e-4)


def test_tecoa_is_pmg_aft_with_zero_weights():
    tecoa = tecoa_loss(ADV, LABELS)
    assert tecoa.item() == pytest.approx(ce_by_hand(ADV, LABELS), rel=1e-6)
    assert pmg_aft_loss(ADV, LABELS, alpha=0, beta=0).loss.item() == pytest.approx(tecoa.item(), rel=1e-6)


def test_gradients_flow_through_adversarial_and_clean_logits():
    adv, clean = ADV.clone().requires_grad_(True), CLEAN.clone().requires_grad_(True)
    pmg_aft_loss(adv, LABELS, clean, REF, alpha=1, beta=1).loss.backward()
    assert adv.grad.abs().sum() > 0 and clean.grad.abs().sum() > 0


def test_missing_logits_and_bad_direction_are_clear_errors():
    with pytest.raises(ValueError, match="guidance"):
        pmg_aft_loss(ADV, LABELS, CLEAN, None, alpha=1, beta=1)
    with pytest.raises(ValueError, match="clean consistency"):
        pmg_aft_loss(ADV, LABELS, None, REF, alpha=1, beta=1)
    with pytest.raises(ValueError, match="kl_direction"):
        pmg_aft_loss(ADV, LABELS, CLEAN, REF, kl_direction="sideways")
