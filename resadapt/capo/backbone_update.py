"""ResAdapt-RL's backbone step (method spec §6 step 8): PPO on GRPO advantages, micro-batched; token-level on a
Qwen backbone, one ratio per answer on the built-in one (its answer is a single choice: W = 1 below).

For prompt b with R = M·N rollouts (allocation m, answer i) of scores score_{b,r}:

    A_{b,r}   = (score_{b,r} − mean_r score_{b,r}) / (std_r score_{b,r} + 1e-6)      GRPO, per prompt
    ρ_{r,j}   = exp(clamp(log π_θ(y_{r,j} | x_r, y_{r,<j}) − log π_old(y_{r,j} | ·), ±20))   per answer token j
    L         = −Σ_{r,j valid} g(ρ_{r,j}, A_r) / Σ_{r,j valid} 1                      token-mean over the step

with g the clipped, dual-clipped surrogate of ``losses.ppo_loss``. The step's (prompt, allocation) items are fed
``update_batch`` at a time; every micro-batch's loss is divided by the step's total token count, so the
accumulated gradient equals one full batch's. Items whose advantages are all 0 add nothing and are skipped.
π_old is the pre-update policy: the detached log-probs of the first epoch.

Data-parallel (``resadapt.capo.distributed``): each rank holds its own prompts' items, the token count is the
global one, and the backbone's forward goes through DDP. Each synchronised backward is a collective, so every rank
runs as many micro-batches (a rank with fewer pads with zero-advantage ones, which add 0), all but the last under
``no_sync``: the gradients are all-reduced once per epoch, after the whole accumulation.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import torch

from resadapt.backbone.interface import Item
from resadapt.capo.advantage import grpo_advantage
from resadapt.capo.distributed import SINGLE, Ranks, through
from resadapt.capo.losses import ppo_loss


def token_logprobs(backbone, items: Sequence[Item], answers) -> tuple[torch.Tensor, torch.Tensor]:
    """[b, N, W] answer-token log-probs and mask; a backbone without tokens (the built-in model's answer is one
    choice) gives W = 1."""
    if hasattr(backbone, "answer_token_logprobs"):
        return backbone.answer_token_logprobs(items, answers)
    logp = backbone.answer_logprobs(items, answers)[..., None]
    return logp, torch.ones_like(logp, dtype=torch.bool)


def answer_lengths(answers, n_items: int, n: int) -> torch.Tensor:
    """[B·M, N] valid tokens per answer: the rollout's token ids, or 1 for a backbone without tokens."""
    if answers and isinstance(answers[0][0], list):
        return torch.tensor([[len(a) for a in row] for row in answers])
    return torch.ones(n_items, n, dtype=torch.long)


def accumulate_token_ppo(backbone, items: Sequence[Item], answers, advantage: torch.Tensor, update_batch: int,
                         clip_low: float, clip_high: float, dual_clip: float,
                         old: list[torch.Tensor] | None = None, ranks: Ranks = SINGLE,
                         ddp: torch.nn.Module | None = None) -> tuple[float, list[torch.Tensor]]:
    """Backward of L over ``items`` (advantage [len(items), N]) in micro-batches; returns this rank's part of L and
    each micro-batch's detached log-probs (π_old for later epochs; pass them back as ``old``). ``ddp``: the
    backbone's model under DDP, whose forward the micro-batches go through (``ranks`` > 1)."""
    total = ranks.all_sum(answer_lengths(answers, len(items), advantage.shape[1]).sum()).clamp_min(1).item()
    active = [i for i in range(len(items)) if advantage[i].abs().sum() > 0]
    batches = [active[start : start + update_batch] for start in range(0, len(active), update_batch)]
    real = len(batches)
    batches += [[0]] * (ranks.all_max(real) - real)  # item 0 with its advantage zeroed: a backward that adds 0
    loss_sum, stored = 0.0, []
    for k, idx in enumerate(batches):
        local = ddp.no_sync() if ddp is not None and ranks.world > 1 and k < len(batches) - 1 else nullcontext()
        with local, through(backbone, ddp):
            logp, mask = token_logprobs(backbone, [items[i] for i in idx], [answers[i] for i in idx])
            logp_old = old[k] if old is not None else logp.detach()
            stored.append(logp_old)
            adv = advantage[idx].to(logp.device) * (k < real)
            n_valid = mask.sum()
            loss = ppo_loss(logp.flatten(0, 1), logp_old.flatten(0, 1), adv.flatten(), mask.flatten(0, 1).float(),
                            clip_low, clip_high, dual_clip) * n_valid / total
            (loss * ranks.world).backward()  # DDP averages over the ranks; the partial sums are to add up
        loss_sum += loss.item()
    return loss_sum, stored


def backbone_step(backbone, opt, items: Sequence[Item], answers, scores: torch.Tensor, n: int, loop,
                  ranks: Ranks = SINGLE, ddp: torch.nn.Module | None = None) -> float:
    """One ResAdapt-RL update; scores [B, M·N] (prompt-major, as the rollouts; this rank's prompts). Returns the
    last epoch's L (over all ranks)."""
    advantage = grpo_advantage(scores).view(-1, n)  # [B·M, N]
    params = [p for p in backbone.model.parameters() if p.requires_grad]
    old, loss = None, 0.0
    for _ in range(loop.ppo_epochs):
        opt.zero_grad(set_to_none=True)
        loss, stored = accumulate_token_ppo(backbone, items, answers, advantage, loop.update_batch, loop.clip_low,
                                            loop.clip_high, loop.dual_clip, old, ranks, ddp)
        old = old or stored
        torch.nn.utils.clip_grad_norm_(params, loop.grad_clip)
        opt.step()
    if hasattr(backbone, "sync_weights"):  # a separate rollout engine (vLLM) gets the new weights
        backbone.sync_weights()
    return ranks.all_sum(torch.tensor(loss, device=params[0].device)).item() if ranks.world > 1 else loss
