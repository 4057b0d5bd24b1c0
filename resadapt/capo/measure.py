"""How a trained Allocator does on held-out data, with the deterministic policy (the Beta mean) and greedy answers."""

from __future__ import annotations

import torch

from resadapt.allocator.model import Allocator
from resadapt.backbone.interface import Item, Query
from resadapt.capo.train import deterministic_scales
from resadapt.data.sample import Video
from resadapt.features.coarse import Features


def answer_all(backbone, videos: list[Video], scales: torch.Tensor, batch_size: int = 64, style: str = "plain") -> dict:
    """Greedy answers at given per-frame scales [n, T]: mcq accuracy, grounding mIoU, measured retention;
    ``style``: the prompt's instruction."""
    acc, ious, retention, tokens = [], [], [], []
    for start in range(0, len(videos), batch_size):
        chunk = videos[start : start + batch_size]
        items = [Item(v.frames, scales[start + i].tolist(), Query.from_meta(v.meta, style), key=v.key)
                 for i, v in enumerate(chunk)]
        rollouts = backbone.generate(items, greedy=True)
        for v, answers, r, t in zip(chunk, rollouts.answers, rollouts.retention, rollouts.tokens, strict=True):
            (acc if v.meta["task"] == "mcq" else ious).append(v.score(answers[0]))
            retention.append(r)
            tokens.append(t)
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return {"accuracy": mean(acc), "miou": mean(ious), "retention": mean(retention), "tokens": mean(tokens),
            "n_mcq": len(acc), "n_grounding": len(ious)}


def measure_allocator(allocator: Allocator, backbone, features: Features, videos: list[Video],
                      batch_size: int = 64, style: str = "plain") -> dict:
    """ResAdapt against Full on the same split, and how selective the allocation is (where the generator's labels
    say which frame is queried)."""
    scales = deterministic_scales(allocator, features, list(range(len(videos))))
    resadapt = answer_all(backbone, videos, scales, batch_size, style=style)
    full = answer_all(backbone, videos, torch.ones_like(scales), batch_size, style=style)
    metrics = {f"resadapt/{k}": v for k, v in resadapt.items()} | {f"full/{k}": v for k, v in full.items()}
    targets = [v.target() for v in videos]
    if all(t is not None for t in targets):
        t_idx = torch.tensor(targets)
        queried = scales[torch.arange(len(videos)), t_idx]
        others = (scales.sum(-1) - queried) / (scales.shape[1] - 1)
        metrics["scale/queried"], metrics["scale/others"] = queried.mean().item(), others.mean().item()
        metrics["scale/queried_over_others"] = metrics["scale/queried"] / metrics["scale/others"]
    metrics["scale/mean"] = scales.mean().item()
    return metrics
