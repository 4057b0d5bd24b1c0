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
    ResAdapt (split budget)  the same factor c for every clip of the split, the largest whose tokens summed over the
                  split fit r · Σ tokens(1×): a clip's share follows what its policy asks, so retention is r on
                  average, not per clip (``match_split_budget``; no remainder fill). Chosen as an extra row on
                  `val`, 2026-12-02: MCQ 67.3 / 85.3 / 87.8% at r = 0.05 / 0.1 / 0.15 against 66.7 / 79.5 / 85.9%
                  per clip; the gain is on the 2–3-frame questions, whose policy asks for more than r.
    TaskRes       one scale per task: the largest uniform scale whose realised tokens ≤ r_τ · tokens(1×)
    Top-k         the chunks most similar to the query at s = 1 within B, the rest floored or dropped (topk.py)

Every method reports the retention it realised, never the target: grid rounding and the one-token floor can land a
method off its budget, and when even the floor is over budget (many frames, tiny r) the row says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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
    return match_budgets(scales[None], frame_size, grid, [budget_tokens], s_min, s_max, iters, fill)[0]


def match_budgets(scales: torch.Tensor, frame_size: tuple[int, int], grid: GridSpec, budget_tokens: Sequence[float],
                  s_min: float, s_max: float = 1.0, iters: int = 40, fill: bool = True) -> torch.Tensor:
    """``match_budget`` of N clips of one frame size and frame count at once: scales [N, T], one budget per clip →
    [N, T], each row exactly what ``match_budget`` gives it alone (the searches run side by side)."""
    wanted = scales.clamp(s_min, s_max)
    matched = _rescale(scales, frame_size, grid, budget_tokens, s_min, s_max, iters)
    if not fill:
        return matched
    out = []
    for n in range(len(scales)):
        covered = not bool((matched[n] < wanted[n] - 1e-6).any())
        caps = torch.full_like(scales[n], s_max) if covered else wanted[n]
        out.append(fill_remainder(matched[n], scales[n], frame_size, grid, budget_tokens[n], caps))
    return torch.stack(out)


def match_split_budget(scales: Sequence[torch.Tensor], frame_sizes: Sequence[tuple[int, int]], grid: GridSpec,
                       budget_tokens: float, s_min: float, s_max: float = 1.0, iters: int = 40) -> list[torch.Tensor]:
    """Per clip, clip(c·s, s_min, s_max) [T_i] with one c for all clips, the largest (bisection on log c) whose
    tokens summed over the clips fit ``budget_tokens``; every clip at s_min when even that is over."""
    groups: dict[tuple, list[int]] = {}  # clips of one frame size and count are priced side by side
    for i, (s, size) in enumerate(zip(scales, frame_sizes, strict=True)):
        groups.setdefault((tuple(size), len(s)), []).append(i)
    stacked = {key: torch.stack([scales[i] for i in idx]).detach().cpu().numpy() for key, idx in groups.items()}
    bounds = np.float32(s_min), np.float32(s_max)

    def at(log_c: float) -> dict[tuple, np.ndarray]:
        return {key: np.clip(s * np.float32(math.exp(log_c)), *bounds) for key, s in stacked.items()}

    def fits(log_c: float) -> bool:
        return sum(int(total_tokens(key[0], s, grid).sum()) for key, s in at(log_c).items()) <= budget_tokens

    lo, hi = -12.0, 12.0
    if fits(hi):
        lo = hi
    else:
        for _ in range(iters):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    out: list[torch.Tensor] = [torch.empty(0)] * len(scales)
    for key, s in at(lo).items():
        for i, row in zip(groups[key], s, strict=True):
            out[i] = torch.from_numpy(row)
    return out


def fill_remainder(scales: torch.Tensor, priority: torch.Tensor, frame_size: tuple[int, int], grid: GridSpec,
                   budget_tokens: float, caps: torch.Tensor, levels: int = 48) -> torch.Tensor:
    """Raise chunks in order of ``priority`` (their mean), each to the largest of ``levels`` scales up to its cap
    (the mean of ``caps``) that keeps the total within ``budget_tokens``. A chunk's frames share one size."""
    plan = plan_resize(frame_size, scales.tolist(), grid)
    spent = plan.total_tokens
    out = scales.clone()
    # each chunk is visited once and changes only itself, so its "now" (and what each candidate costs) is known
    # up front
    priority, now, cap = (_chunk_means(x, plan.chunks) for x in (priority, scales, caps))
    raise_ = [k for k in range(len(plan.chunks)) if now[k] < cap[k]]
    if not raise_:
        return out
    candidates = torch.stack([torch.linspace(cap[k], now[k], levels) for k in raise_])  # from the cap down
    tokens = chunk_tokens(frame_size, candidates.numpy(), grid)  # [K', levels]
    for row in sorted(range(len(raise_)), key=lambda row: -priority[raise_[row]]):
        k = raise_[row]
        fits = np.flatnonzero(spent - plan.tokens[k] + tokens[row] <= budget_tokens)  # the first that fits is taken
        if len(fits) and tokens[row, fits[0]] > plan.tokens[k]:
            out[plan.chunks[k].start : plan.chunks[k].stop] = float(candidates[row, fits[0]])
            spent += int(tokens[row, fits[0]]) - plan.tokens[k]
    return out


def _chunk_means(x: torch.Tensor, chunks: list[range]) -> list[float]:
    """Each chunk's mean of ``x`` (float32, as torch computes it), as Python floats."""
    if all(len(c) == 1 for c in chunks):
        return x[[c.start for c in chunks]].tolist()
    return [float(x[c.start : c.stop].mean()) for c in chunks]


def uniform_scale(frame_size: tuple[int, int], n_frames: int, grid: GridSpec, r: float) -> float:
    """The largest scale that, on every frame, realises at most r · tokens(1×) (at least the one-cell floor)."""
    return float(_rescale(torch.ones(1, n_frames), frame_size, grid, [r * full_tokens(frame_size, n_frames, grid)],
                          1e-3, 1.0, 40)[0, 0])


def _rescale(scales: torch.Tensor, frame_size: tuple[int, int], grid: GridSpec, budget_tokens: Sequence[float],
             s_min: float, s_max: float, iters: int) -> torch.Tensor:
    """Per row of ``scales`` [N, T]: clip(c·s, s_min, s_max) with the largest c (bisection on log c) whose tokens
    fit that row's budget."""
    s = scales.detach().cpu().numpy()  # in the tensor's dtype (float32), as the same ops on the tensor would be
    bounds = np.float32(s_min), np.float32(s_max)
    budget = np.asarray(budget_tokens, dtype=np.float64)

    def at(log_c: np.ndarray) -> np.ndarray:  # [N] → [N, T]; math.exp per row, as one clip's search takes it
        return np.clip(s * np.array([math.exp(c) for c in log_c.tolist()], dtype=np.float32)[:, None], *bounds)

    def fits(log_c: np.ndarray) -> np.ndarray:
        return total_tokens(frame_size, at(log_c), grid) <= budget

    lo, hi = np.full(len(s), -12.0), np.full(len(s), 12.0)
    floor_only, all_fit = ~fits(lo), fits(hi)
    for _ in range(iters):
        mid = (lo + hi) / 2
        ok = fits(mid)
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    return torch.from_numpy(at(np.where(floor_only, -12.0, np.where(all_fit, 12.0, lo))))
