"""Training losses, one small pure function per method. All KL terms are batch means."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from .errors import InputError


class PMGAFTLoss(NamedTuple):
    """The total loss and its terms (the terms are for logging; only `loss` is back-propagated)."""

    loss: torch.Tensor
    ce: torch.Tensor
    guidance_kl: torch.Tensor
    clean_kl: torch.Tensor


def kl_divergence(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """Batch-mean `KL(P || Q) = sum_c P_c (log P_c - log Q_c)`, `P = softmax(p_logits)`, `Q = softmax(q_logits)`."""
    return F.kl_div(
        q_logits.float().log_softmax(-1), p_logits.float().log_softmax(-1), log_target=True, reduction="batchmean"
    )


def pmg_aft_loss(
    adv_logits: torch.Tensor,
    labels: torch.Tensor,
    clean_logits: torch.Tensor | None = None,
    ref_adv_logits: torch.Tensor | None = None,
    alpha: float = 256.0,
    beta: float = 256.0,
    kl_direction: str = "official",
) -> PMGAFTLoss:
    r"""PMG-AFT loss (Wang et al., CVPR 2024).

    `L = CE(z_t(x'), y) + alpha * KL(p_0(x') || p_t(x')) + beta * KL(p_t(x) || p_t(x'))` with batch-mean CE and KL.
    The official code sums the KL terms over a batch of 256 with weight 1, which is `alpha = beta = 256` here.
    `kl_direction="early"` swaps both KL arguments, as an earlier revision of the official code did.

    Args:
        adv_logits (`torch.Tensor`): target model's logits on adversarial images, `z_t(x')`.
        labels (`torch.LongTensor`): true classes.
        clean_logits (`torch.Tensor`, *optional*): target model's logits on clean images, `z_t(x)`; needed if beta > 0.
        ref_adv_logits (`torch.Tensor`, *optional*): frozen pre-trained model's logits on the adversarial images,
            `z_0(x')`; needed if alpha > 0.
        alpha (`float`): weight of the guidance term.
        beta (`float`): weight of the clean-consistency term.
        kl_direction (`str`): `"official"` or `"early"`.

    Returns:
        [`PMGAFTLoss`]: total loss and its three terms (a term with weight 0 is reported as 0).
    """
    if kl_direction not in ("official", "early"):
        raise InputError(f"kl_direction={kl_direction!r} is not 'official' or 'early'.")
    ce = F.cross_entropy(adv_logits.float(), labels)
    zero = ce.new_zeros(())

    def term(weight: float, other: torch.Tensor | None, name: str) -> torch.Tensor:
        if weight == 0:
            return zero
        if other is None:
            raise InputError(f"A non-zero weight for the {name} term needs its logits.")
        return kl_divergence(other, adv_logits) if kl_direction == "official" else kl_divergence(adv_logits, other)

    guidance = term(alpha, ref_adv_logits, "guidance (alpha)")
    clean = term(beta, clean_logits, "clean consistency (beta)")
    return PMGAFTLoss(ce + alpha * guidance + beta * clean, ce, guidance, clean)


def tecoa_loss(adv_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """TeCoA (Mao et al., ICLR 2023): cross-entropy of the zero-shot logits on adversarial images.

    It is PMG-AFT with `alpha = beta = 0`.
    """
    return F.cross_entropy(adv_logits.float(), labels)


def squared_distance(embeddings: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample squared L2 distance `||e - t||^2` (FARE's attack objective)."""
    return (embeddings.float() - targets.float()).pow(2).sum(dim=-1)


def fare_loss(adv_embeddings: torch.Tensor, ref_clean_embeddings: torch.Tensor) -> torch.Tensor:
    """FARE (Schlarmann et al., ICML 2024): batch mean of `||E_t(x') - E_0(x)||^2` on unnormalised embeddings.

    Unsupervised: no labels and no text, only the frozen model's embedding of the clean image.
    """
    return squared_distance(adv_embeddings, ref_clean_embeddings.detach()).mean()


def clean_loss(clean_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Plain zero-shot fine-tuning: cross-entropy of the logits on clean images (no attack)."""
    return F.cross_entropy(clean_logits.float(), labels)


def batch_clip_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    r"""TGA-ZSR's FT-Clean loss (FT.py:321-327): the symmetric CLIP loss over the batch's own classes.

    With `M = logits[:, labels]` (B x B: image i against the class text of sample j),
    `loss = (CE(M, arange(B)) + CE(M^T, arange(B))) / 2`. Two samples of one class are each other's negatives, as
    in the official code.
    """
    matrix = logits.float()[:, labels]
    target = torch.arange(len(labels), device=logits.device)
    return (F.cross_entropy(matrix, target) + F.cross_entropy(matrix.t(), target)) / 2


def text_guided_attention(tokens: torch.Tensor, text_embeddings: torch.Tensor, size: int) -> torch.Tensor:
    """TGA-ZSR's text-guided attention map, flattened: `(batch, size * size)`.

    `tokens` are the projected features of every output token (`visual_projection(post_layernorm(hidden))`,
    `(batch, 1 + patches, dim)`), normalised over the token axis as the official code does; the patch tokens'
    similarity to each sample's class text embedding is min-max scaled over the patches, laid out on the patch
    grid and resized (bilinear) to `size`.
    """
    features = tokens.float() / tokens.float().norm(dim=1, keepdim=True).clamp_min(1e-12)
    scores = (features[:, 1:, :] @ text_embeddings.float().unsqueeze(-1)).squeeze(-1)
    low, high = scores.min(dim=1, keepdim=True).values, scores.max(dim=1, keepdim=True).values
    scores = (scores - low) / (high - low).clamp_min(1e-12)
    side = int(round(scores.shape[1] ** 0.5))
    grid = scores.view(-1, 1, side, side)
    return F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False).flatten(1)


class TGAZSRLoss(NamedTuple):
    loss: torch.Tensor
    ce: torch.Tensor
    refinement: torch.Tensor
    constraint: torch.Tensor


def tga_zsr_loss(
    adv_logits: torch.Tensor,
    labels: torch.Tensor,
    adv_attention: torch.Tensor,
    clean_attention: torch.Tensor,
    ref_clean_attention: torch.Tensor,
    alpha: float = 0.08,
    beta: float = 0.05,
) -> TGAZSRLoss:
    """TGA-ZSR (Yu, Zhang and Xu, NeurIPS 2024).

    `CE(z_t(x'), y) + alpha * mean ||A_t(x') - A_0(x)||_2 + beta * mean ||A_t(x) - A_0(x)||_2`: the attention
    refinement term pulls the target's text-guided attention on adversarial images towards the original model's on
    clean images, the model constraint term keeps its clean attention there too. Defaults are the official ones.
    """
    ce = F.cross_entropy(adv_logits.float(), labels)
    reference = ref_clean_attention.detach()
    refinement = (adv_attention - reference).norm(dim=1).mean()
    constraint = (clean_attention - reference).norm(dim=1).mean()
    return TGAZSRLoss(ce + alpha * refinement + beta * constraint, ce, refinement, constraint)


def complementary_attention(
    tokens: torch.Tensor, text_embeddings: torch.Tensor, negation_embeddings: torch.Tensor, size: int
) -> torch.Tensor:
    """Comp-TGA's complementary text-guided attention map, flattened: `A = M_pos * (1 - M_neg)`.

    `M_pos` is [`text_guided_attention`] against each sample's class prompt ("This is a photo of a {}"), `M_neg`
    the same against its negation ("This is not a photo of a {}"), each min-max scaled over the patches and resized
    to `size` before the product (Comp-TGA's attention_map.py:32-62).
    """
    positive = text_guided_attention(tokens, text_embeddings, size)
    return positive * (1 - text_guided_attention(tokens, negation_embeddings, size))


def soft_cross_entropy(logits: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy against probability targets: `-sum_c p_c log softmax(z)_c` (AGFT's attack objective,
    and its loss averaged over the batch)."""
    return -(probabilities.float() * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1)


def agft_loss(adv_logits: torch.Tensor, teacher_probabilities: torch.Tensor) -> torch.Tensor:
    """AGFT (Cui et al., CVPR 2026): batch mean of the soft-label cross-entropy between the target's logits on
    adversarial images, `s_s * cos(V_t(x'), T)`, and the frozen model's clean prediction,
    `softmax(s_t * cos(V_0(x), T))` (train.py:104-118, 191)."""
    return soft_cross_entropy(adv_logits, teacher_probabilities.detach()).mean()
