"""The GRPO-style CAPO loop: B prompts × M allocations × N answers per step, the backbone behind ``Backbone``.

Each step: the Allocator's Beta policy draws M scale vectors per prompt; the backbone answers each allocation N
times; acc_k is the mean correctness, c_k the proxy cost; CAPO gives A_k; a per-frame PPO step updates the
Allocator (and, with ``update_backbone``, a token-level PPO step on GRPO advantages updates the backbone).
Randomness is seeded per step (the prompts drawn) and per prompt (its allocations, its answers), so a run resumed
from a checkpoint continues exactly as it would have, and a data-parallel run (``ranks``: each rank rolls out its
share of the prompts, see ``resadapt.capo.distributed``) draws what one process draws.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from resadapt.allocator.model import Allocator, AllocatorConfig, beta_log_prob, sample_u
from resadapt.backbone.interface import Item, Query, Rollouts, generate_batched, join_rollouts
from resadapt.capo.advantage import CapoCoefficients, frame_advantage, frame_priority, proxy_cost, spend_correlation
from resadapt.capo.backbone_update import backbone_step
from resadapt.capo.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from resadapt.capo.distributed import SINGLE, Ranks, replicate
from resadapt.capo.losses import concentration_loss, credit_loss, ppo_loss, similarity_loss, similarity_pairs
from resadapt.config import RewardParams
from resadapt.data.sample import Video
from resadapt.features.coarse import Features


@dataclass(frozen=True)
class LoopConfig:
    steps: int = 600
    prompts: int = 16  # B
    allocations: int = 8  # M
    answers: int = 4  # N
    lr: float = 2e-3
    warmup: int = 20
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    ppo_epochs: int = 1
    clip_low: float = 0.2
    clip_high: float = 0.28
    dual_clip: float = 10.0
    conc_coef: float = 5e-4
    sim_coef: float = 1e-3
    credit_coef: float = 0.3  # weight of L_credit (0: the spec's loss)
    checkpoint_every: int = 50
    seed: int = 0
    update_backbone: bool = False
    backbone_lr: float = 1e-4
    rollout_batch: int = 8  # (prompt, allocation) items per generate call
    update_batch: int = 2  # items per backbone forward/backward in the ResAdapt-RL step
    prompt: str = "plain"  # the instruction style of every query (train.prompt)
    reward: RewardParams = RewardParams()  # the backbone's score in ResAdapt-RL (train.reward)


class CollapseGuard:
    """Warns once when the policy collapses: mean scale pinned at s_min, or κ at its cap (spec §10.8)."""

    def __init__(self, s_min: float, patience: int = 20):
        self.s_min, self.patience, self.pinned, self.warned = s_min, patience, 0, set()

    def check(self, step: int, mean_scale: float, kappa_max: float) -> None:
        self.pinned = self.pinned + 1 if mean_scale < self.s_min + 0.02 else 0
        if self.pinned >= self.patience and "scale" not in self.warned:
            self.warned.add("scale")
            warnings.warn(f"step {step}: mean scale pinned at s_min={self.s_min} for {self.pinned} steps (cost "
                          "collapse)", RuntimeWarning, stacklevel=2)
        if kappa_max >= 0.95 * 200 and "kappa" not in self.warned:
            self.warned.add("kappa")
            warnings.warn(f"step {step}: concentration κ reached its cap (over-confident policy)", RuntimeWarning,
                          stacklevel=2)


def _finite(step: int, **tensors: torch.Tensor) -> None:
    for name, t in tensors.items():
        if not torch.isfinite(t).all():
            raise FloatingPointError(f"CAPO step {step}: non-finite {name}")


def rollout_items(videos: list[Video], scales: torch.Tensor, style: str = "plain") -> list[Item]:
    """One Item per (prompt, allocation); scales [B, M, T]; ``style``: the prompt's instruction (train.prompt)."""
    return [Item(v.frames, scales[b, m].tolist(), Query.from_meta(v.meta, style), key=v.key)
            for b, v in enumerate(videos) for m in range(scales.shape[1])]


def step_metrics(scales, frame_mask, acc, cost, retention, out, losses, videos, s_min, s_max) -> dict:
    valid = frame_mask[:, None].expand_as(scales)
    s = scales[valid]
    per_alloc = scales.masked_fill(~valid, float("nan"))
    m = {
        "reward": acc.mean().item(), "accuracy": (acc > 0.35).float().mean().item(),
        "retention": float(sum(retention) / len(retention)), "proxy_cost": cost.mean().item(),
        "scale/mean": s.mean().item(), "scale/min": s.min().item(), "scale/max": s.max().item(),
        "scale/std": torch.nanmean((per_alloc - torch.nanmean(per_alloc, -1, keepdim=True)) ** 2, -1)
        .sqrt().mean().item(),
        "scale/all_min": ((scales <= s_min + 0.01) | ~valid).all(-1).float().mean().item(),
        "scale/all_max": ((scales >= s_max - 0.01) | ~valid).all(-1).float().mean().item(),
        "kappa/mean": out["kappa"][frame_mask].mean().item(), "kappa/max": out["kappa"][frame_mask].max().item(),
        **{f"loss/{k}": v for k, v in losses.items()},
    }
    targets = [v.target() for v in videos]
    if all(t is not None for t in targets):
        t_idx = torch.tensor(targets)
        queried = scales[torch.arange(len(videos)), :, t_idx]  # [B, M]
        others = (scales.sum(-1) - queried) / (frame_mask.sum(-1, keepdim=True) - 1).clamp_min(1)
        m["scale/queried"], m["scale/others"] = queried.mean().item(), others.mean().item()
    return m


def prompt_seed(seed: int, step: int, prompt: int, stream: str) -> int:
    """The seed of one prompt's ``stream`` of draws ("scales", "answers") at one step, whichever rank holds it."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{step}/{prompt}/{stream}".encode()).digest()[:8], "little") >> 1


def seeded_rollouts(backbone, items: list[Item], seeds: list[int], n: int, batch_size: int) -> Rollouts:
    """Each prompt's items answered right after seeding torch with that prompt's seed, so its answers do not depend on
    the prompts beside it: a call never mixes prompts (it holds at most min(M, batch_size) items)."""
    m = len(items) // len(seeds)
    parts = []
    for b, seed in enumerate(seeds):
        torch.manual_seed(seed)
        parts.append(generate_batched(backbone, items[b * m : (b + 1) * m], n, batch_size))
    return join_rollouts(parts)


def train_allocator(loop: LoopConfig, allocator_config: AllocatorConfig, capo: CapoCoefficients,
                    features: Features, videos: list[Video], backbone, checkpoint_dir: Path,
                    log: Callable[[int, dict], None] = lambda step, m: None, progress: bool = True,
                    on_step: Callable[[int], None] = lambda step: None,
                    fingerprint: str = "", device: str = "cpu", ranks: Ranks = SINGLE) -> tuple[Allocator, list[dict]]:
    """Train from scratch, or resume from a checkpoint in ``checkpoint_dir`` with the same ``fingerprint``;
    returns the Allocator and the per-step metrics (of the whole batch, on every rank). ``ranks``: this process's
    place in a data-parallel run; rank 0 alone logs and checkpoints, every rank resumes."""
    B, M, N = loop.prompts, loop.allocations, loop.answers
    if B < ranks.world:
        raise ValueError(f"{B} prompts per step cannot be shared by {ranks.world} ranks: each needs one at least")
    torch.manual_seed(loop.seed)
    allocator = Allocator(allocator_config)
    allocator.init_policy()
    allocator.to(device)
    opt = torch.optim.AdamW(allocator.parameters(), lr=loop.lr, betas=(0.9, 0.999), weight_decay=loop.weight_decay)
    models, optimizers = {"allocator": allocator}, {"allocator": opt}
    backbone_opt = None
    if loop.update_backbone:  # the factory built it trainable (all weights, or a LoRA adapter's only)
        trainable = [p for p in backbone.model.parameters() if p.requires_grad]
        backbone_opt = torch.optim.AdamW(trainable, lr=loop.backbone_lr, weight_decay=0.0)
        models["backbone"], optimizers["backbone"] = backbone.model, backbone_opt
    start, history = (load_checkpoint(checkpoint_dir, models, optimizers)
                      if has_checkpoint(checkpoint_dir, fingerprint) else (0, []))
    if ranks.main:  # a rerun starts with empty logs (DVC clears outputs): replay what the checkpoint saw
        for metrics in history:
            log(metrics["step"], metrics)
    policy = replicate(allocator, ranks)  # wrapped after the restore; DDP starts every rank from rank 0's weights
    backbone_ddp = replicate(backbone.model, ranks, find_unused=True) if backbone_opt is not None else None
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / loop.warmup), last_epoch=start - 1)
    guard = CollapseGuard(allocator_config.s_min)
    mine = ranks.share(B)  # this rank's prompts of every step

    def whole(t: torch.Tensor) -> torch.Tensor:
        """The batch's rows of a per-prompt tensor, from every rank, on the CPU (for the metrics)."""
        return ranks.gather(t.detach(), B).cpu()

    bar = tqdm(range(start, loop.steps), desc="capo", unit="step", initial=start, total=loop.steps,
               disable=not progress or not ranks.main)
    for step in bar:
        on_step(step)
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(loop.seed * 1_000_003 + step)
        torch.manual_seed(loop.seed * 1_000_003 + step)
        index = torch.randint(len(videos), (B,), generator=gen)  # the global batch, drawn alike on every rank
        batch = [videos[i] for i in index.tolist()]
        local = batch[mine.start : mine.stop]
        inputs = [x.to(device) for x in features.select(index[mine.start : mine.stop])]
        frame_mask = inputs[1]
        out = policy(*inputs)
        _finite(step, alpha=out["alpha"], beta=out["beta"])
        b, T = frame_mask.shape
        alpha, beta = out["alpha"][:, None].expand(b, M, T), out["beta"][:, None].expand(b, M, T)
        u = torch.stack([sample_u(alpha[i].cpu(), beta[i].cpu(),
                                  torch.Generator().manual_seed(prompt_seed(loop.seed, step, g, "scales")))
                         for i, g in enumerate(mine)]).to(device)  # [b, M, T], fp32 end to end
        scales = allocator.scales(u)
        items = rollout_items(local, scales.cpu(), loop.prompt)
        rollouts = seeded_rollouts(backbone, items, [prompt_seed(loop.seed, step, g, "answers") for g in mine], N,
                                   loop.rollout_batch)
        acc = torch.tensor([[sum(v.score(a) for a in rollouts.answers[i * M + m]) / N for m in range(M)]
                            for i, v in enumerate(local)], device=device)  # [b, M]
        mask = frame_mask[:, None].expand(b, M, T).float()
        cost = proxy_cost(scales, mask, allocator_config.s_min, allocator_config.s_max)  # [b, M]
        priority = frame_priority(out["relevance"], out["novelty"], out["detail"]).detach()[:, None].expand(b, M, T)
        advantage = frame_advantage(acc, scales, mask, allocator_config.s_min, allocator_config.s_max, capo,
                                    priority)  # [b, M, T]: per prompt, so a rank's prompts need no other rank's
        verdict, varied = spend_correlation(acc, scales, mask, allocator_config.s_min, allocator_config.s_max)
        credit_mask = frame_mask.float() * varied[:, None]
        logq_old = beta_log_prob(u, alpha, beta).detach()
        # every loss divides by the whole batch's count of valid entries, so the ranks' parts add up to it
        counts = ranks.all_sum(torch.stack([mask.sum(), frame_mask.sum(), similarity_pairs(frame_mask.float()).sum(),
                                            credit_mask.any(-1).sum()]).float())
        losses = {}
        for epoch in range(loop.ppo_epochs):
            if epoch:
                out = policy(*inputs)
            logq = beta_log_prob(u, out["alpha"][:, None].expand(b, M, T), out["beta"][:, None].expand(b, M, T))
            l_ppo = ppo_loss(logq.flatten(0, 1), logq_old.flatten(0, 1), advantage.flatten(0, 1), mask.flatten(0, 1),
                             loop.clip_low, loop.clip_high, loop.dual_clip, counts[0])
            l_conc = concentration_loss(out["kappa"], frame_mask.float(), counts[1])
            l_sim = similarity_loss(out["states"], allocator.scales(out["mean"]), frame_mask.float(), count=counts[2])
            l_credit = credit_loss(out["query_match"], verdict, credit_mask, counts[3])
            loss = l_ppo + loop.conc_coef * l_conc + loop.sim_coef * l_sim + loop.credit_coef * l_credit
            total = ranks.all_sum(torch.stack([l_ppo, l_conc, l_sim, l_credit, loss]).detach())
            _finite(step, loss=total[4])
            opt.zero_grad(set_to_none=True)
            (loss * ranks.world).backward()  # DDP averages the ranks' gradients: their sum is the batch's
            torch.nn.utils.clip_grad_norm_(allocator.parameters(), loop.grad_clip)
            opt.step()
            losses = dict(zip(("ppo", "conc", "sim", "credit", "total"), total.tolist(), strict=True))
        sched.step()
        if backbone_opt is not None:
            lengths = rollouts.token_ids or [[[0] for _ in row] for row in rollouts.answers]  # tokens per answer
            scores = torch.tensor([[v.backbone_score(a, len(ids), loop.reward)
                                    for m in range(M) for a, ids in zip(rollouts.answers[i * M + m],
                                                                       lengths[i * M + m], strict=True)]
                                   for i, v in enumerate(local)])  # [b, M·N]: acc, format and overlong terms
            losses["backbone"] = backbone_step(backbone, backbone_opt, items, rollouts.token_ids or rollouts.answers,
                                               scores, N, loop, ranks, backbone_ddp)
        retention = whole(torch.tensor(rollouts.retention, dtype=torch.float64, device=device).view(b, M))
        metrics = step_metrics(whole(scales), features.select(index)[1], whole(acc), whole(cost),
                               retention.flatten().tolist(), {"kappa": whole(out["kappa"])}, losses, batch,
                               allocator_config.s_min, allocator_config.s_max)
        metrics.update(step=step, seconds=time.perf_counter() - t0, advantage_std=whole(advantage).std().item())
        history.append(metrics)
        if ranks.main:
            guard.check(step, metrics["scale/mean"], metrics["kappa/max"])
            log(step, metrics)
            bar.set_postfix(acc=f"{metrics['accuracy']:.2f}", r=f"{metrics['retention']:.3f}")
            if (step + 1) % loop.checkpoint_every == 0 or step + 1 == loop.steps:
                save_checkpoint(checkpoint_dir, models, optimizers, step + 1, history, fingerprint)
    return allocator.eval(), history


def deterministic_scales(allocator: Allocator, features: Features, index: list[int] | torch.Tensor) -> torch.Tensor:
    """Eval action: the Beta mean, u = α/(α + β) → scales [n, T]."""
    device = next(allocator.parameters()).device
    with torch.no_grad():
        out = allocator(*[x.to(device) for x in features.select(index)])
    return allocator.scales(out["alpha"] / (out["alpha"] + out["beta"])).cpu()

