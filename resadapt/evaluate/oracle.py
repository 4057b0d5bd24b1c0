"""The label oracles: what an allocation that knows the answer's frames (and their needs) gets at a budget.

A reference ceiling read off the generator's labels (the needed frames and each glyph's need), never an input to any
method. For a multiple-choice question every chunk holding a needed frame N (a frame showing a colour the question
names) is capped at a margin m over the scale its glyph needs, and every other frame at s_min:

    cap_c = min(1, m · max_{t ∈ c ∩ N} need_t)    (the chunk's frames share one size: the most demanding decides)

``oracle`` knows where and how much (m = NEED_MARGIN); ``oracle_where`` knows only where (m = ∞: needed chunks at
scale 1). The margin was chosen on `val` (2026-12-02; MCQ accuracy at r = 0.1 / 0.15, built-in backbone): m = 1
80.1 / 84.6%, m = 1.25 91.7 / 98.1%, m = ∞ 84.6 / 93.6%. At exactly its need a glyph is read 84–91% of the time
(README "CAPO on a known-answer bandit"), so the ceiling needs the margin.

The needed frames of a grounding question are capped at s_min too: it reads border colours, legible at the floor.
Within a budget B all frames start at s_min and the capped chunks are raised cheapest first (lowest cap_c), each to
cap_c when it fits, else to the largest of the operator's levels that does (``budget.fill_remainder``), so B reads
as many needed chunks as it can hold. What B leaves over is not spent: the row reports the retention realised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from resadapt.backbone.resize import GridSpec, chunk_ranges
from resadapt.data.sample import Video
from resadapt.data.shards import sampled_labels, sampled_needed
from resadapt.evaluate.budget import fill_remainder

NEED_MARGIN = 1.25
MARGINS = {"oracle": NEED_MARGIN, "oracle_where": math.inf}  # method → m


def labelled(videos: Sequence[Video]) -> bool:
    """Whether every video carries the labels the oracles read (the built-in data set's do; one's own do not)."""
    return all(sampled_needed(v.meta) is not None for v in videos)


def oracle_scales(meta: dict, n_frames: int, frame_size: tuple[int, int], grid: GridSpec, budget_tokens: float,
                  s_min: float, margin: float = NEED_MARGIN) -> torch.Tensor:
    """Scales [T] of the label oracle with ``margin`` m for one video (its shard ``meta``) within ``budget_tokens``."""
    needed = sampled_needed(meta)
    if needed is None:
        raise ValueError(f"video {meta.get('id', '?')!r}: the oracle methods read the generator's labels (needed "
                         "frames, each glyph's need), which this video has none of: drop oracle* from evaluate.methods")
    labels, _ = sampled_labels(meta)
    caps = torch.full((n_frames,), float(s_min))
    if meta.get("task") == "mcq":
        for chunk in chunk_ranges(n_frames, grid.temporal_patch):
            needs = [float(labels[t].get("need", 1.0)) for t in chunk if t in needed]
            if needs:
                caps[list(chunk)] = min(1.0, margin * max(needs))
    floor = torch.full((n_frames,), float(s_min))
    return fill_remainder(floor, -caps, frame_size, grid, budget_tokens, caps)
