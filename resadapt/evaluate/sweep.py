"""Run every method at every budget on one split: the rows of the efficiency–accuracy frontier."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from resadapt.allocator.model import Allocator
from resadapt.backbone.interface import Item, Query
from resadapt.capo.train import deterministic_scales
from resadapt.data.sample import Video
from resadapt.evaluate.budget import (
    fixed_scales,
    full_tokens,
    match_budgets,
    match_split_budget,
    random_keep,
    uniform_scale,
)
from resadapt.evaluate.metrics import summarise
from resadapt.evaluate.oracle import MARGINS, oracle_scales
from resadapt.evaluate.taskres import TaskRes
from resadapt.evaluate.topk import frame_query_match, relevance_topk
from resadapt.features.coarse import Features


@dataclass
class EvalSet:
    """A split at one frame count: its videos and the Allocator's features of exactly those frames."""

    videos: list[Video]
    features: Features


def answer(backbone, videos: Sequence[Video], items: Sequence[Item], base_tokens: Sequence[int],
           batch_size: int = 32) -> tuple[dict, list[str], dict[str, dict[str, float]]]:
    """Greedy answers for ``items`` (one per video); retention is against each video's 1× full tokens. Returns
    the summary, the answer texts and the per-sample scores {"mcq": {key: 1/0}, "grounding": {key: IoU}} (what
    paired comparisons between methods read)."""
    groups: dict[int, list[int]] = defaultdict(list)  # one backbone call holds clips of one frame count
    for i, it in enumerate(items):
        groups[len(it.frames)].append(i)
    texts: list[str] = [""] * len(items)
    tokens: list[int] = [0] * len(items)
    for idx in groups.values():
        for start in range(0, len(idx), batch_size):
            chunk = idx[start : start + batch_size]
            rollouts = backbone.generate([items[i] for i in chunk], greedy=True)
            for i, ans, tok in zip(chunk, rollouts.answers, rollouts.tokens, strict=True):
                texts[i], tokens[i] = ans[0], tok
    scores: dict[str, dict[str, float]] = {"mcq": {}, "grounding": {}}
    for v, text in zip(videos, texts, strict=True):
        scores["mcq" if v.meta["task"] == "mcq" else "grounding"][v.key] = v.score(text)
    correct, ious = list(scores["mcq"].values()), list(scores["grounding"].values())
    retention = [t / b for t, b in zip(tokens, base_tokens, strict=True)]
    return summarise(correct, ious, tokens, retention), texts, scores


def frame_size(video: Video) -> tuple[int, int]:
    return tuple(video.frames.shape[1:3])


def resadapt_scales(allocator: Allocator, evalset: EvalSet, backbone, r: float | None, base_tokens: Sequence[int],
                    fill: bool = True) -> list[torch.Tensor]:
    """Per video: the deterministic policy's scales, brought within r · (1× full tokens) when r is given."""
    policy = deterministic_scales(allocator, evalset.features, list(range(len(evalset.videos))))
    out = [policy[i, : len(v.frames)] for i, v in enumerate(evalset.videos)]
    if r is None:
        return out
    groups: dict[tuple, list[int]] = defaultdict(list)  # one search runs clips of one frame count and size
    for i, v in enumerate(evalset.videos):
        groups[len(v.frames), frame_size(v)].append(i)
    for (n, size), idx in groups.items():
        matched = match_budgets(policy[idx, :n], size, backbone.grid, [r * base_tokens[i] for i in idx],
                                allocator.config.s_min, fill=fill)
        for i, s in zip(idx, matched, strict=True):
            out[i] = s
    return out


TOPK = ("relevance_topk", "relevance_topk_drop")  # floors / drops the frames outside the selection


def frames_multiplier(method: str) -> int:
    """k for a method run on k× the frames (named ``<method>_x<k>``), else 1."""
    _, sep, k = method.rpartition("_x")
    return int(k) if sep and k.isdigit() else 1


def topk_variant(method: str) -> str | None:
    """The top-k variant (one of TOPK) a method runs, on any number of frames; None for other methods."""
    k = frames_multiplier(method)
    name = method.removesuffix(f"_x{k}") if k > 1 else method
    return name if name in TOPK else None


def topk_items(evalset: EvalSet, backbone, r: float, base_tokens: Sequence[int], s_min: float, drop: bool,
               style: str = "plain", keyed: bool = True) -> list[Item]:
    """Per video: relevance top-k (resadapt.evaluate.topk) on the features' frame–query match, within
    r · (1× full tokens); dropped frames keep their own time segments. ``keyed``: items carry the shard key (the
    1× clip with every frame encoded)."""
    n = len(evalset.videos)
    match = frame_query_match(evalset.features.frame_embed[list(range(n))],
                              evalset.features.query_embed[list(range(n))])  # [N, T]
    items = []
    for i, v in enumerate(evalset.videos):
        q = Query.from_meta(v.meta, style)
        sel = relevance_topk(match[i, : len(v.frames)], frame_size(v), backbone.grid, r * base_tokens[i], s_min, drop)
        segments = Item(v.frames, [1.0] * len(v.frames), q).frame_segments()
        items.append(Item(v.frames[sel.keep], sel.scales, q, key=v.key if keyed and not drop else None,
                          segments=[segments[t] for t in sel.keep] if drop else None))
    return items


def sweep(backbone, allocator: Allocator, sets: dict[int, EvalSet], budgets: Sequence[float], methods: Sequence[str],
          taskres: TaskRes | None, seed: int = 0, progress: bool = True, batch_size: int = 32,
          style: str = "plain", nosim: Allocator | None = None) -> list[dict]:
    """One row per (method, budget): the method's scores and measured cost. ``sets[1]`` is the 1× split;
    ``style``: the prompt's instruction (evaluate.prompt); ``nosim``: the ablation Allocator trained without the
    encoder's similarity signal (method resadapt_nosim)."""
    base = sets[1]
    base_tokens = [full_tokens(frame_size(v), len(v.frames), backbone.grid) for v in base.videos]
    queries = [Query.from_meta(v.meta, style) for v in base.videos]
    rows = []

    def run(method: str, budget: float | None, items: list[Item], videos: list[Video]) -> None:
        metrics, _, scores = answer(backbone, videos, items, base_tokens, batch_size)
        rows.append({"method": method, "budget": budget, **metrics, "scores": scores})

    jobs = [(m, r) for m in methods for r in ([None] if m in ("full", "resadapt_policy") else budgets)]
    for method, r in tqdm(jobs, desc="evaluate", unit="point", disable=not progress):
        if method == "full":
            run(method, 1.0, [Item(v.frames, [1.0] * len(v.frames), q, key=v.key)
                              for v, q in zip(base.videos, queries, strict=True)], base.videos)
        elif method == "fixed_scale":
            run(method, r, [Item(v.frames, fixed_scales(len(v.frames), r), q, key=v.key)
                            for v, q in zip(base.videos, queries, strict=True)], base.videos)
        elif method == "random_drop":
            rng = np.random.default_rng([seed, round(r * 1000)])
            items = []
            for v, q in zip(base.videos, queries, strict=True):
                keep = random_keep(len(v.frames), r, rng)
                segments = Item(v.frames, [1.0] * len(v.frames), q).frame_segments()
                items.append(Item(v.frames[keep], [1.0] * len(keep), q, segments=[segments[i] for i in keep]))
            run(method, r, items, base.videos)
        elif topk_variant(method):
            k = frames_multiplier(method)
            if k not in sets:
                raise ValueError(f"method {method}: no {k}x-frame clips were loaded")
            run(method, r, topk_items(sets[k], backbone, r, base_tokens, allocator.config.s_min,
                                      drop=topk_variant(method) == "relevance_topk_drop", style=style, keyed=k == 1),
                sets[k].videos)
        elif method == "taskres":
            if taskres is None:
                raise ValueError("method taskres needs a calibration (TaskRes)")
            items = []
            for v, q in zip(base.videos, queries, strict=True):
                s = uniform_scale(frame_size(v), len(v.frames), backbone.grid, taskres.retention(q.task, r))
                items.append(Item(v.frames, [s] * len(v.frames), q, key=v.key))
            run(method, r, items, base.videos)
        elif method in ("resadapt", "resadapt_policy", "resadapt_uniform"):
            scales = resadapt_scales(allocator, base, backbone, r, base_tokens, fill=method != "resadapt_uniform")
            run(method, r, [Item(v.frames, s.tolist(), q, key=v.key)
                            for v, s, q in zip(base.videos, scales, queries, strict=True)], base.videos)
        elif method in MARGINS:
            s_min = allocator.config.s_min
            run(method, r, [Item(v.frames, oracle_scales(v.meta, len(v.frames), frame_size(v), backbone.grid,
                                                         r * b, s_min, MARGINS[method]).tolist(), q, key=v.key)
                            for v, q, b in zip(base.videos, queries, base_tokens, strict=True)], base.videos)
        elif method == "resadapt_split":
            policy = resadapt_scales(allocator, base, backbone, None, base_tokens)
            scales = match_split_budget(policy, [frame_size(v) for v in base.videos], backbone.grid,
                                        r * sum(base_tokens), allocator.config.s_min)
            run(method, r, [Item(v.frames, s.tolist(), q, key=v.key)
                            for v, s, q in zip(base.videos, scales, queries, strict=True)], base.videos)
        elif method == "resadapt_nosim":
            if nosim is None:
                raise ValueError("method resadapt_nosim needs the ablation Allocator (stage train_nosim)")
            scales = resadapt_scales(nosim, base, backbone, r, base_tokens)
            run(method, r, [Item(v.frames, s.tolist(), q, key=v.key)
                            for v, s, q in zip(base.videos, scales, queries, strict=True)], base.videos)
        elif method.startswith("resadapt_x"):
            k = int(method.removeprefix("resadapt_x"))
            if k not in sets:
                raise ValueError(f"method {method}: no {k}x-frame clips were loaded")
            more = sets[k]
            scales = resadapt_scales(allocator, more, backbone, r, base_tokens)
            run(method, r, [Item(v.frames, s.tolist(), Query.from_meta(v.meta, style), key=f"{v.key}@{k}x")
                            for v, s in zip(more.videos, scales, strict=True)], more.videos)
        else:
            raise ValueError(f"unknown method {method!r}")
    return rows
