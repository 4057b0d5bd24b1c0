"""CAPO advantages (method spec §4). Shapes: a group is one prompt's M allocations, tensors are [B, M].

    Â_k = (acc_k − mean acc) / (std acc + 1e-6)            0 when M = 1 or std < 1e-4
    p   = λ·mean_k c_k + (1 − λ)·τ                          dynamic cost pivot (detached)
    r_k = σ((p − c_k)/T) − ½                                >0 when allocation k is cheaper than the pivot
    S_k = 0.7·max(acc_k^½, 0.05)·r_k                        correct (acc_k > 0.35)
    S_k = −1.3·(1 − acc_k)·r_k      (more_pixels)           incorrect: wrong-and-cheap is penalised (reference code)
    S_k = +1.3·(1 − acc_k)·r_k      (fewer_pixels)          incorrect: wrong-and-expensive is penalised (paper prose)
    A_k = Â_k + 0.25·S_k − 0.05·c_k,   and A_k ≥ 0.001 for correct allocations;  A = 0 when M = 1

The dataclass defaults are the reference implementation's; the pipeline's values come from params.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

SPREAD_FLOOR = 0.05  # frame_cost: a frame whose ŝ varies less than this across its group gets a fading push

IncorrectShaping = Literal["more_pixels", "fewer_pixels"]
Credit = Literal["allocation", "capo_frame", "frame_cost"]


@dataclass(frozen=True)
class CapoCoefficients:
    lam: float = 0.5  # λ: weight of the group's mean cost in the pivot
    tau: float = 0.4  # τ_target, in normalised-cost units
    temperature: float = 0.15  # T
    correct_threshold: float = 0.35
    correct_weight: float = 0.7
    incorrect_weight: float = 1.3
    shaping: float = 0.25
    gas: float = 0.05  # residual global cost pressure
    floor: float = 1e-3
    incorrect_shaping: IncorrectShaping = "more_pixels"
    credit: Credit = "allocation"  # how A reaches the frames (see ``frame_advantage``)
    frame_coef: float = 0.25  # weight of the per-frame term (capo_frame: 0.25 in the reference)
    frame_gate: bool = True  # frame_cost: the push is signed by correctness (see ``frame_advantage``)
    frame_blame: float = 1.0  # β: weight of the gated push on a wrong allocation (see ``frame_advantage``)


def proxy_cost(scales: torch.Tensor, mask: torch.Tensor, s_min: float, s_max: float) -> torch.Tensor:
    """c = clip((mean_valid s − s_min)/(s_max − s_min + 1e-6), 0, 1) on requested scales [..., T] → [...]."""
    mean = (scales * mask).sum(-1) / mask.sum(-1).clamp_min(1)
    return ((mean - s_min) / (s_max - s_min + 1e-6)).clamp(0, 1)


def base_advantage(acc: torch.Tensor) -> torch.Tensor:
    """Â: group-normalised accuracy [B, M] (population std); 0 for groups with M = 1 or uniform accuracy."""
    if acc.shape[-1] < 2:
        return torch.zeros_like(acc)
    std = acc.std(-1, unbiased=False, keepdim=True)
    adv = (acc - acc.mean(-1, keepdim=True)) / (std + 1e-6)
    return torch.where(std < 1e-4, torch.zeros_like(adv), adv)


def cost_pivot(cost: torch.Tensor, lam: float, tau: float) -> torch.Tensor:
    """p = λ·mean_k(c_k) + (1 − λ)·τ per group → [B, 1], detached."""
    return (lam * cost.mean(-1, keepdim=True) + (1 - lam) * tau).detach()


def cost_shaping(acc: torch.Tensor, cost: torch.Tensor, pivot: torch.Tensor, k: CapoCoefficients) -> torch.Tensor:
    """S: asymmetric, correctness-aware shaping [B, M] (see the module docstring)."""
    r_small = torch.sigmoid((pivot - cost) / k.temperature) - 0.5
    correct = acc > k.correct_threshold
    s_correct = k.correct_weight * acc.clamp_min(0).sqrt().clamp_min(0.05) * r_small
    sign = -1.0 if k.incorrect_shaping == "more_pixels" else 1.0
    s_incorrect = sign * k.incorrect_weight * (1 - acc).clamp_min(0) * r_small
    return torch.where(correct, s_correct, s_incorrect)


def capo_advantage(acc: torch.Tensor, cost: torch.Tensor, k: CapoCoefficients = CapoCoefficients()) -> torch.Tensor:
    """A_k = Â_k + shaping·S_k − gas·c_k, floored at ``floor`` for correct allocations; 0 for M = 1. [B, M]."""
    if acc.shape[-1] < 2:
        return torch.zeros_like(acc)
    advantage = base_advantage(acc) + k.shaping * cost_shaping(acc, cost, cost_pivot(cost, k.lam, k.tau), k)
    advantage = advantage - k.gas * cost
    correct = acc > k.correct_threshold
    return torch.where(correct, advantage.clamp_min(k.floor), advantage)


def grpo_advantage(score: torch.Tensor) -> torch.Tensor:
    """Backbone advantage (ResAdapt-RL): score [B, R] normalised over each prompt's R = M·N rollouts."""
    if score.shape[-1] < 2:
        return torch.zeros_like(score)
    return (score - score.mean(-1, keepdim=True)) / (score.std(-1, unbiased=False, keepdim=True) + 1e-6)


def frame_priority(relevance: torch.Tensor, novelty: torch.Tensor, detail: torch.Tensor) -> torch.Tensor:
    """capo_frame's π_t = 0.45·(1 − redundancy) + 0.15·uniqueness + 0.30·relevance01 + 0.10·detail [..., T], with
    the Allocator's own signals: redundancy = 1 − novelty and uniqueness = novelty, all in [0, 1]."""
    return 0.45 * novelty + 0.15 * novelty + 0.30 * relevance + 0.10 * detail


def _z(x: torch.Tensor, mask: torch.Tensor, dim: int, spread_floor: float = 1e-6) -> torch.Tensor:
    """Masked z-score along ``dim`` with the population std floored at ``spread_floor``; 0 where it is < 1e-4."""
    n = mask.sum(dim, keepdim=True).clamp_min(1)
    mean = (x * mask).sum(dim, keepdim=True) / n
    std = (((x - mean) ** 2 * mask).sum(dim, keepdim=True) / n).sqrt()
    return torch.where(std < 1e-4, torch.zeros_like(x), (x - mean) / std.clamp_min(spread_floor)) * mask


def frame_advantage(acc: torch.Tensor, scales: torch.Tensor, mask: torch.Tensor, s_min: float, s_max: float,
                    k: CapoCoefficients = CapoCoefficients(), priority: torch.Tensor | None = None) -> torch.Tensor:
    """Per-frame advantages A_{k,t} [B, M, T] from acc [B, M], scales and mask [B, M, T].

        allocation:  A_{k,t} = A_k                                         (spec §4: one advantage per allocation)
        capo_frame:  A_{k,t} = A_k + η·z_t(R),  R_t = π_t·ŝ_t + (1 − π_t)(1 − ŝ_t)   z over the allocation's frames
        frame_cost:  A_{k,t} = A_k + η·g_k·z_k(−ŝ_{k,t})                   z over the group's M allocations, per frame
                     g_k = 0.7·√acc_k if correct, −β·1.3·(1 − acc_k) if not  (g = 1 without ``frame_gate``)

    with ŝ = (s − s_min)/(s_max − s_min), η = ``frame_coef`` and β = ``frame_blame``. frame_cost credits each frame
    with the cost it spent itself, relative to the same frame in the other allocations of its prompt: the cost is a
    sum over frames, so the other frames' costs are noise for frame t and are left out, and the z-score (its std
    floored at SPREAD_FLOOR, so a frame that already spends the same everywhere is pushed less and κ need not run to
    its cap) keeps the pressure O(1) where the broadcast −gas·c_k shrinks to ~sd(s)/T. The gate g is CAPO's
    asymmetric shaping per frame: a correct allocation credits the frames it spent less on, a wrong one blames them,
    so the push reverses once answers fail (ungated, the push on all T frames outweighs the accuracy pull on one and
    the policy collapses to s_min, measured on the bandit's "two_frames"). A wrong answer blames every frame that
    spent less, the ones it did not need too; β < 1 weakens that blame so that frames nobody needs keep sinking (on
    the bandit without the similarity input: β = 1 holds them near the need, β = 0 collapses every frame to s_min).
    The correctness floor is not applied to the per-frame term.
    """
    cost = proxy_cost(scales, mask, s_min, s_max)  # [B, M]
    base = capo_advantage(acc, cost, k)[..., None] * mask
    if k.credit == "allocation" or acc.shape[-1] < 2:
        return base
    s_hat = ((scales - s_min) / (s_max - s_min)).clamp(0, 1)
    if k.credit == "capo_frame":
        if priority is None:
            raise ValueError("credit capo_frame needs the frame priority π_t")
        reward = priority * s_hat + (1 - priority) * (1 - s_hat)
        return base + k.frame_coef * _z(reward, mask, -1)
    push = _z(-s_hat, mask, 1, SPREAD_FLOOR)  # [B, M, T]
    if k.frame_gate:
        push = push * torch.where(acc > k.correct_threshold, k.correct_weight * acc.clamp_min(0).sqrt(),
                                  -k.frame_blame * k.incorrect_weight * (1 - acc).clamp_min(0))[..., None]
    return base + k.frame_coef * push


def spend_correlation(acc: torch.Tensor, scales: torch.Tensor, mask: torch.Tensor, s_min: float, s_max: float
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """v_t = corr_k(acc_k, ŝ_{k,t}) over a prompt's M allocations [B, T], and which prompts' accuracy varied [B].

    A frame whose spend goes with the answer being right is one the question needs: v is the reward's own verdict
    per frame (noisy, O(1/√M), for frames nobody needs), the target of ``credit_loss``."""
    s_hat = ((scales - s_min) / (s_max - s_min)).clamp(0, 1)
    z_s = _z(s_hat, mask, 1, SPREAD_FLOOR)  # [B, M, T]
    z_acc = base_advantage(acc)[..., None]  # [B, M, 1]
    return (z_acc * z_s).mean(1), acc.std(-1, unbiased=False) >= 1e-4
