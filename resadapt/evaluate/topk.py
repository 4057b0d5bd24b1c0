"""Relevance top-k: the frame-selection heuristic of spec §3.6 on the Allocator's own similarity signal.

The frozen encoder embeds frames and query in one space; the Allocator receives their match as an input,

    match_t = (max_k cos(f_t, q_k) + 1) / 2               f_t = frame_embed[t] [E], q_k = query_embed[k] [E]

(q_k: the query's views, resadapt.allocator.model.frame_query_match)

Top-k ranks the backbone's temporal chunks (``grid.temporal_patch`` frames, which share one size) by their mean
match_t and, for a budget B = r · tokens(1× clip at scale 1):

    k      = the largest number of top-ranked chunks at s = 1 that fits B, the other frames at s_min (``drop=False``)
             or not encoded at all (``drop=True``; their time segments stay theirs for grounding)
    next   = what B has left after those k goes to the next-ranked chunk, the largest of ``levels`` scales in
             [s_min, 1) that fits (as ResAdapt's operator spends its rounding remainder), so top-k leaves no more of
             B unused than ResAdapt does
    ≥ 1    = at least one chunk per video (spec §3.6): with ``drop`` and B below even one chunk at s_min, the top
             chunk is kept at s_min and the row reports the retention it realised

Floored frames cost tokens (the one-cell floor) and count against B; a budget too small even for the floor leaves
every frame at s_min, reported as measured (as for ResAdapt).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from resadapt.allocator.model import frame_query_match as allocator_match
from resadapt.backbone.resize import GridSpec, chunk_ranges, target_size, tokens_of


def frame_query_match(frame_embed: torch.Tensor, query_embed: torch.Tensor) -> torch.Tensor:
    """match [..., T], the Allocator's input (``resadapt.allocator.model.frame_query_match``), for features with a
    shared frame/query space."""
    if frame_embed.shape[-1] == 0:
        raise ValueError("relevance top-k needs an encoder with a shared frame/query space (features.encoder "
                         "contrastive, builtin or hf); these features have frame_embed width 0: drop relevance_topk* "
                         "from evaluate.methods")
    return allocator_match(frame_embed, query_embed)


@dataclass(frozen=True)
class TopK:
    """One video's selection: the frames encoded (in temporal order) and their scales."""

    keep: list[int]
    scales: list[float]
    k: int  # chunks at scale 1


def relevance_topk(match: torch.Tensor, frame_size: tuple[int, int], grid: GridSpec, budget_tokens: float,
                   s_min: float, drop: bool, levels: int = 48) -> TopK:
    """The top-k selection of ``match`` [T] within ``budget_tokens`` (see the module docstring)."""
    chunks = chunk_ranges(len(match), grid.temporal_patch)
    # ties keep temporal order (a stable sort), so the selection is deterministic
    order = torch.sort(torch.stack([match[list(c)].mean() for c in chunks]), descending=True, stable=True).indices
    full = tokens_of(target_size(*frame_size, 1.0, grid), grid)  # every chunk costs the same at a given scale
    floor = tokens_of(target_size(*frame_size, s_min, grid), grid)
    rest = 0 if drop else floor  # what a chunk outside the selection costs
    n = len(chunks)
    k = max((j for j in range(n + 1) if j * full + (n - j) * rest <= budget_tokens), default=0)
    scale = [1.0 if j < k else None for j in range(n)]  # by rank
    if k < n:
        left = budget_tokens - k * full - (n - k - 1) * rest
        fits = [s for s in torch.linspace(1.0, s_min, levels).tolist()[1:]
                if tokens_of(target_size(*frame_size, s, grid), grid) <= left]
        if fits:
            scale[k] = fits[0]
        elif drop and k == 0:
            scale[0] = s_min
    by_chunk = {int(order[j]): s for j, s in enumerate(scale) if s is not None or not drop}
    keep = [t for c in sorted(by_chunk) for t in chunks[c]]
    scales = [by_chunk[c] if by_chunk[c] is not None else s_min for c in sorted(by_chunk) for _ in chunks[c]]
    return TopK(keep, scales, k)
