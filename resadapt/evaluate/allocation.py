"""Where and how much the Allocator spends, judged by the generator's labels (which the Allocator never sees).

For each video with labels: the needed frames N (every sampled frame showing a colour the question names) and the
others O. Reported over all videos:

    needed_scale = mean_{v, t ∈ N_v} s_{v,t}        other_scale = mean_{v, t ∈ O_v} s_{v,t}
    ratio        = needed_scale / other_scale
    corr_need    = Pearson corr(s_{v,t}, need_{v,t}) over needed frames (stripes: the scale each glyph needs)

The same again over the multiple-choice videos alone (``mcq``: their questions read the glyphs; a grounding question
reads border colours, legible at any scale, so its needed frames need no resolution whatever their glyph's need),
and per question kind (``kinds``, from the generator's ``question_kind``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from resadapt.data.sample import Video
from resadapt.data.shards import sampled_labels, sampled_needed


def allocation_stats(scales: Sequence[torch.Tensor], videos: Sequence[Video]) -> dict:
    """Per-frame scales [T] per video (a policy's, or after the budget operator) against the labels; {} without."""
    out = _stats(scales, videos)
    if out:
        mcq = [i for i, v in enumerate(videos) if v.meta.get("task") == "mcq"]
        out["mcq"] = _stats([scales[i] for i in mcq], [videos[i] for i in mcq])
        kinds: dict[str, list[int]] = {}
        for i, v in enumerate(videos):
            kinds.setdefault(str((v.meta.get("meta") or {}).get("question_kind")), []).append(i)
        out["kinds"] = {k: _stats([scales[i] for i in idx], [videos[i] for i in idx])
                        for k, idx in sorted(kinds.items())}
    return out


def _stats(scales: Sequence[torch.Tensor], videos: Sequence[Video]) -> dict:
    needed, others, needs = [], [], []
    for s, v in zip(scales, videos, strict=True):
        positions = sampled_needed(v.meta)
        if not positions:
            continue
        labels = sampled_labels(v.meta)[0]
        mask = torch.zeros(len(s), dtype=torch.bool)
        mask[positions] = True
        needed += s[mask].tolist()
        others += s[~mask].tolist()
        needs += [labels[t].get("need") for t in positions]
    if not needed:
        return {}
    out = {"needed_scale": sum(needed) / len(needed), "other_scale": sum(others) / len(others) if others else None,
           "n_needed_frames": len(needed)}
    out["ratio"] = out["needed_scale"] / out["other_scale"] if out["other_scale"] else None
    if all(n is not None for n in needs) and len(needs) > 2:
        pair = torch.tensor([needed, needs], dtype=torch.float64)
        out["corr_need"] = torch.corrcoef(pair)[0, 1].item() if bool((pair.std(1) > 1e-9).all()) else None
    return out
