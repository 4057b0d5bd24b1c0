"""How each method meets a visual budget r (a retention target: tokens / tokens of the 1× clip at scale 1).

    Full          s_t = 1
    FixedScale    s_t = √r                              (r ≈ s², up to the grid's rounding)
    RandomDrop    k = max(1, round(r·T)) frames kept at s = 1, chosen at random; the rest are not encoded
    ResAdapt      budget B = r · tokens(1× at s = 1). Every scale is multiplied by one factor,
                  s'_t = clip(c·s_t, s_min, 1) with the largest c within B; what the grid's rounding leaves goes to
                  the highest-ranked chunks, each as far toward its cap as it fits: 1 when B covers the policy's own
                  scales, the scale the Allocator asked for when it does not. (Chosen on `val`, 2026-12-01: serving
                  frames in the Allocator's order instead, each at its ask or s_min, left the top frame at s_min
                  whenever its ask did not fit: 34.0% vs 67.3% MCQ accuracy at r = 0.05, 78.2 vs 80.8% at 0.1.
                  The plain rescale without the remainder, ``fill=False``, is reported as ``resadapt_uniform``.)
    TaskRes       one scale per task: the largest uniform scale whose realised tokens ≤ r_τ · tokens(1×)
    Top-k         the chunks most similar to the query at s = 1 within B, the rest floored or dropped (topk.py)

Every method reports the retention it realised, never the target: grid rounding and the one-token floor can land a
method off its budget, and when even the floor is over budget (many frames, tiny r) the row says so.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from resadapt.backbone.resize import GridSpec, chunk_tokens, plan_resize, total_tokens


def full_tokens(frame_size: tuple[int, int], n_frames: int, grid: GridSpec) -> int:
    """Visual tokens of ``n_frames`` frames at scale 1: the denominator of every retention here."""
    return plan_resize(frame_size, [1.0] * n_frames, grid).full_tokens


def fixed_scales(n_frames: int, r: float) -> list[float]:
    return [math.sqrt(r)] * n_frames


def random_keep(n_frames: int, r: float, rng: np.random.Generator) -> list[int]:
    """Indices of the frames RandomDrop keeps (sorted, at least one)."""
    k = min(n_frames, max(1, round(r * n_frames)))
    return sorted(int(i) for i in rng.choice(n_frames, size=k, replace=False))


def match_budget(scales: torch.Tensor, frame_size: tuple[int, int], grid: GridSpec, budget_tokens: float,
                 s_min: float, s_max: float = 1.0, iters: int = 40, fill: bool = True) -> torch.Tensor:
    """A policy's scales [T] brought within ``budget_tokens`` (see the module docstring); ``fill=False`` stops after
    the uniform rescale (for comparison).

    Tokens grow monotonically with c, so the largest feasible c is found to ``iters`` halvings. Scales are kept in
    [s_min, s_max]; with every frame at s_min and still over budget, the floor is returned (infeasible).
    """
    wanted = scales.clamp(s_min, s_max)
    matched = _rescale(scales, frame_size, grid, budget_tokens, s_min, s_max, iters)
    if not fill:
        return matched
    covered = not bool((matched < wanted - 1e-6).any())
    caps = torch.full_like(scales, s_max) if covered else wanted
    return fill_remainder(matched, scales, frame_size, grid, budget_tokens, caps)


def fill_remainder(scales: torch.Tensor, priority: torch.Tensor, frame_size: tuple[int, int], grid: GridSpec,
                   budget_tokens: float, caps: torch.Tensor, levels: int = 48) -> torch.Tensor:
    """Raise chunks in order of ``priority`` (their mean), each to the largest of ``levels`` scales up to its cap
    (the mean of ``caps``) that keeps the total within ``budget_tokens``. A chunk's frames share one size."""
    plan = plan_resize(frame_size, scales.tolist(), grid)
    spent = plan.total_tokens
    out = scales.clone()
    # each chunk is visited once and changes only itself, so its "now" can be read up front
    means = {name: [float(x[list(c)].mean()) for c in plan.chunks] for name, x in
             (("priority", priority), ("now", scales), ("cap", caps))}
    for k in sorted(range(len(plan.chunks)), key=lambda k: -means["priority"][k]):
        now, cap = means["now"][k], means["cap"][k]
        if now >= cap:
            continue
        candidates = torch.linspace(cap, now, levels)  # from the cap down: the first that fits is taken
        tokens = chunk_tokens(frame_size, candidates.numpy(), grid)
        fits = np.flatnonzero(spent - plan.tokens[k] + tokens <= budget_tokens)
        if len(fits) and tokens[fits[0]] > plan.tokens[k]:
            out[list(plan.chunks[k])] = float(candidates[fits[0]])
            spent += int(tokens[fits[0]]) - plan.tokens[k]
    return out


def uniform_scale(frame_size: tuple[int, int], n_frames: int, grid: GridSpec, r: float) -> float:
    """The largest scale that, on every frame, realises at most r · tokens(1×) (at least the one-cell floor)."""
    return float(_rescale(torch.ones(n_frames), frame_size, grid, r * full_tokens(frame_size, n_frames, grid),
                          1e-3, 1.0, 40)[0])


def _rescale(scales: torch.Tensor, frame_size: tuple[int, int], grid: GridSpec, budget_tokens: float,
             s_min: float, s_max: float, iters: int) -> torch.Tensor:
    s = scales.detach().cpu().numpy()  # in the tensor's dtype (float32), as the same ops on the tensor would be
    bounds = np.float32(s_min), np.float32(s_max)

    def at(log_c: float) -> np.ndarray:
        return np.clip(s * np.float32(math.exp(log_c)), *bounds)

    def tokens(log_c: float) -> int:
        return total_tokens(frame_size, at(log_c), grid)

    lo, hi = -12.0, 12.0
    if tokens(lo) > budget_tokens:
        return torch.from_numpy(at(lo))
    if tokens(hi) <= budget_tokens:
        return torch.from_numpy(at(hi))
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if tokens(mid) <= budget_tokens else (lo, mid)
    return torch.from_numpy(at(lo))
