"""Figures of the sweep: the accuracy–retention frontier and per-video allocation heatmaps (matplotlib, PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from resadapt.backbone.resize import plan_resize, resize_frames  # noqa: E402
from resadapt.io import atomic_path  # noqa: E402

LABELS = {"full": "Full", "fixed_scale": "FixedScale", "random_drop": "RandomDrop", "taskres": "TaskRes",
          "resadapt": "ResAdapt", "resadapt_uniform": "ResAdapt (uniform rescale)",
          "resadapt_policy": "ResAdapt (policy)", "resadapt_split": "ResAdapt (split budget)",
          "resadapt_x2": "ResAdapt 2x frames",
          "resadapt_x4": "ResAdapt 4x frames", "relevance_topk": "Relevance top-k (floor)",
          "relevance_topk_drop": "Relevance top-k (drop)", "relevance_topk_x2": "Relevance top-k (floor) 2x frames",
          "relevance_topk_x4": "Relevance top-k (floor) 4x frames",
          "relevance_topk_drop_x2": "Relevance top-k (drop) 2x frames",
          "relevance_topk_drop_x4": "Relevance top-k (drop) 4x frames",
          "resadapt_nosim": "ResAdapt without the similarity signal",
          "oracle": "Oracle: where and how much (labels)", "oracle_where": "Oracle: where only (labels)"}


def label(method: str) -> str:
    return LABELS.get(method, method)


def pareto_png(rows: Sequence[dict], path: str | Path, metric: str = "accuracy") -> None:
    """Accuracy against measured retention, one colour and line per method (the label oracles dashed: ceilings,
    not methods)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = plt.get_cmap("tab20").colors  # the default cycle has 10 colours, the sweep up to 14 methods
    for i, method in enumerate(dict.fromkeys(r["method"] for r in rows)):
        pts = sorted((r["retention"], r[metric]) for r in rows if r["method"] == method and r[metric] is not None)
        xs, ys = zip(*pts, strict=True)
        line = ("--" if method.startswith("oracle") else "-") if len(pts) > 1 else "none"
        shade = (2 * i) % 20 + (2 * i // 20) % 2  # tab20's dark shades for the first 10 methods, then the light
        ax.plot(xs, ys, marker="o", linestyle=line, color=colours[shade], label=label(method))
    ax.set_xscale("log")
    ax.set_xlabel("measured retention (visual tokens / 1x clip at full resolution)")
    ax.set_ylabel(metric)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def heatmaps_png(videos: Sequence, scales: Sequence[torch.Tensor], grid, path: str | Path, title: str) -> None:
    """Per video: every frame as the backbone sees it (shown at one size), its scale as a heat strip, the question
    above, the queried frame boxed in red."""
    n = len(videos)
    t_max = max(len(v.frames) for v in videos)
    fig, axes = plt.subplots(2 * n, 1, figsize=(1.0 * t_max, 2.3 * n), gridspec_kw={"height_ratios": [3, 1] * n})
    for i, (v, s) in enumerate(zip(videos, scales, strict=True)):
        plan = plan_resize(tuple(v.frames.shape[1:3]), s.tolist(), grid)
        seen = [resize_frames(resize_frames(v.frames[r.start : r.stop], size), tuple(v.frames.shape[1:3]))
                for r, size in zip(plan.chunks, plan.sizes, strict=True)]
        strip = torch.cat([f for chunk in seen for f in chunk], dim=1)  # [H, T·W, 3]
        top, bottom = axes[2 * i], axes[2 * i + 1]
        top.imshow(strip.numpy())
        top.set_title(f"{v.meta['question']}  (retention {plan.retention:.1%})", fontsize=9)
        top.axis("off")
        heat = bottom.imshow(s[None].numpy(), cmap="viridis", vmin=0, vmax=1.0, aspect="auto")
        for t, value in enumerate(s.tolist()):
            bottom.text(t, 0, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if value < 0.6 else "black")
        target = v.target()
        if target is not None:
            w = v.frames.shape[2]
            top.add_patch(plt.Rectangle((target * w, 0), w - 1, v.frames.shape[1] - 1, fill=False, color="red", lw=2))
            bottom.add_patch(plt.Rectangle((target - 0.5, -0.5), 1, 1, fill=False, color="red", lw=2))
        bottom.set_yticks([])
        bottom.set_xticks(range(len(s)))
        bottom.set_xlabel("frame", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.colorbar(heat, ax=axes, shrink=0.3, label="scale")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
