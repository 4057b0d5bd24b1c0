"""The Allocator's loss (method spec §4–§5): per-frame PPO on the Beta log-density plus the regularisers.

    ρ_t   = exp(clamp(log q_φ(u_t) − log q_old(u_t), ±20))
    L_PPO = −mean_valid[ g(ρ_t, A) ],   g = min(ρA, clip(ρ, 1−ε_low, 1+ε_high)·A)      for A ≥ 0
                                        g = max(min(ρA, clip(ρ)·A), c·A)               for A < 0 (dual clip c)
    L_conc = mean_valid κ_t                                                            (κ_t = α_t + β_t)
    w_t   = σ((cos(h_t, h_t+1) − τ_s)/T_s)                                             similar neighbours
    L_sim = Σ_t relu(log ŝ_t+1 − log ŝ_t + γ·w_t)·w_t·m_t / max(Σ_t m_t, 1)           the later of two similar
                                                                                       frames must not cost more
    L_credit = −Σ_t softmax_t(v_t/τ)·log softmax_t(r_t/τ)   (not in the spec) the Allocator's own frame–query match
               r_t learns which frames the reward points at, v_t = corr_k(acc_k, ŝ_k,t), per prompt; τ = 0.1
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ppo_loss(logq: torch.Tensor, logq_old: torch.Tensor, advantage: torch.Tensor, mask: torch.Tensor,
             clip_low: float = 0.2, clip_high: float = 0.28, dual_clip: float = 10.0,
             count: torch.Tensor | None = None) -> torch.Tensor:
    """Per-frame clipped surrogate; logq, logq_old, mask: [R, T]; advantage: [R] (broadcast to every valid frame)
    or [R, T] (one per frame). ``count``: the divisor, when these entries are one rank's share of a larger batch
    (the whole batch's valid entries; default: ``mask``'s)."""
    ratio = torch.exp((logq - logq_old).clamp(-20, 20))
    adv = advantage[:, None].expand_as(ratio) if advantage.dim() == 1 else advantage
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - clip_low, 1 + clip_high) * adv)
    surrogate = torch.where(adv < 0, torch.maximum(surrogate, dual_clip * adv), surrogate)
    return -(surrogate * mask).sum() / (mask.sum() if count is None else count).clamp_min(1)


def concentration_loss(kappa: torch.Tensor, mask: torch.Tensor, count: torch.Tensor | None = None) -> torch.Tensor:
    """L_conc: mean κ over valid frames; linear, it pulls κ toward its floor (the policy stays exploratory)."""
    return (kappa * mask).sum() / (mask.sum() if count is None else count).clamp_min(1)


def similarity_pairs(mask: torch.Tensor) -> torch.Tensor:
    """The adjacent-frame pairs L_sim sums over: both frames valid [R, T − 1]."""
    return mask[:, 1:] * mask[:, :-1]


def similarity_loss(states: torch.Tensor, soft_scale: torch.Tensor, mask: torch.Tensor, tau: float = 0.55,
                    temperature: float = 0.12, gamma: float = 0.05, count: torch.Tensor | None = None
                    ) -> torch.Tensor:
    """L_sim over adjacent frames; states [R, T, D] (the Allocator's frame states), soft_scale ŝ [R, T] > 0.

    The gate w_t is detached (spec §10.12): the loss may not be lowered by making neighbours look different.
    """
    w = torch.sigmoid((F.cosine_similarity(states[:, 1:], states[:, :-1], dim=-1) - tau) / temperature).detach()
    pair = similarity_pairs(mask)
    log_s = soft_scale.log()
    excess = F.relu(log_s[:, 1:] - log_s[:, :-1] + gamma * w) * w * pair
    return excess.sum() / (pair.sum() if count is None else count).clamp_min(1)


CREDIT_TEMPERATURE = 0.1


def credit_loss(query_match: torch.Tensor, verdict: torch.Tensor, mask: torch.Tensor,
                count: torch.Tensor | None = None) -> torch.Tensor:
    """L_credit = −Σ_prompts Σ_t p_t·log softmax_t(r_t/τ) / count,  p = softmax_t(v_t/τ),  τ = 0.1:
    the Allocator's own frame–query match r_t ∈ [−1, 1] learns which frames the reward's per-frame verdict v_t
    (``spend_correlation``) points at, as a classification over the clip's frames (a regression on v learns nothing
    under v's O(1/√M) noise, measured on the bandit). query_match, verdict, mask: [R, T]; mask holds the valid frames
    of prompts whose accuracy varied; ``count``: the number of such prompts (of the whole batch). Detached target."""
    valid = mask > 0
    rows = valid.any(-1)
    logits = (query_match / CREDIT_TEMPERATURE).masked_fill(~valid, float("-inf"))[rows]
    target = (verdict.detach() / CREDIT_TEMPERATURE).masked_fill(~valid, float("-inf"))[rows].softmax(-1)
    loss = -(target * logits.log_softmax(-1).masked_fill(~valid[rows], 0)).sum()
    return loss / (rows.sum() if count is None else count).clamp_min(1)
