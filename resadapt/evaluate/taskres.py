"""TaskRes: one resolution per task, after "Task-Aware Resolution Optimization for Visual Large Language Models"
(EMNLP 2025), fitted on a calibration split and spent at a given budget.

The rule implemented here (a budgeted reading of the paper's idea that a task's best resolution follows from its
images' complexity and from how uncertain the model gets as resolution drops):

    C_τ    = mean over task τ's calibration frames of the mean absolute grey-level gradient / 255   (complexity)
    U_τ(s) = mean over τ's calibration samples of 1 − (share of the modal answer among N sampled answers)
             with every frame at scale s                                                          (uncertainty)
    n_τ    = C_τ · max(ε, U_τ(s_low) − U_τ(1))                      (need: complexity × uncertainty gained)
    r_τ    = r · n_τ / Σ_τ' p_τ' n_τ'   (p_τ: τ's share of the calibration split), capped at 1 with the excess
             given to the uncapped tasks, so that Σ_τ p_τ r_τ = r;   s_τ: the largest uniform scale whose
             realised tokens ≤ r_τ · tokens(1×) (the grid rounds √r_τ either way; TaskRes never overspends)

So at the same mean budget as FixedScale, tasks whose answers fall apart at low resolution get more of it. Labels
are never used: only the model's own answers.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from resadapt.backbone.interface import Item, Query

EPS = 1e-3


def complexity(frames: torch.Tensor) -> float:
    """Mean absolute grey-level gradient of uint8 frames [T, H, W, 3], in [0, 1]."""
    grey = frames.float().mean(-1) / 255
    return float((grey[:, 1:, :] - grey[:, :-1, :]).abs().mean() + (grey[:, :, 1:] - grey[:, :, :-1]).abs().mean())


def uncertainty(answers: list[list[str]]) -> float:
    """Mean over samples of 1 − the modal answer's share among its N answers."""
    return sum(1 - Counter(a).most_common(1)[0][1] / len(a) for a in answers) / len(answers)


@dataclass
class TaskRes:
    need: dict[str, float]  # n_τ
    share: dict[str, float]  # p_τ
    curves: dict[str, dict[float, float]] = field(default_factory=dict)  # U_τ(s), for the report
    complexity: dict[str, float] = field(default_factory=dict)

    def retention(self, task: str, r: float) -> float:
        """r_τ: water-filling of r over tasks in proportion to need, each capped at 1."""
        tasks = sorted(self.share)
        alloc, free, budget = {}, set(tasks), r
        while free:
            norm = sum(self.share[t] * self.need[t] for t in free)
            trial = {t: budget * self.need[t] / norm for t in free}
            capped = {t for t in free if trial[t] > 1}
            if not capped:
                alloc |= trial
                break
            for t in capped:
                alloc[t] = 1.0
                budget -= self.share[t]
            free -= capped
            if budget <= 0:
                alloc |= {t: 0.0 for t in free}
                break
        return alloc.get(task, min(1.0, r))

    def describe(self, r: float) -> str:
        need = {t: round(v, 5) for t, v in self.need.items()}
        curves = {t: {s: round(u, 3) for s, u in c.items()} for t, c in self.curves.items()}
        shares = {t: round(self.retention(t, r), 3) for t in sorted(self.share)}
        return f"need n_τ {need}; uncertainty U_τ(s) {curves}; per-task retention r_τ at r = {r:g}: {shares}"


def calibrate(backbone, videos: list, scales: tuple[float, ...] = (0.25, 0.5, 1.0), n: int = 8, seed: int = 0,
              batch_size: int = 32, progress: bool = False, style: str = "plain") -> TaskRes:
    """Fit TaskRes on calibration videos (objects with ``frames`` [T, H, W, 3] and ``meta``); ``style``: the
    prompt's instruction."""
    by_task: dict[str, list] = defaultdict(list)
    for v in videos:
        by_task[v.meta["task"]].append(v)
    torch.manual_seed(seed)
    curves, comp, need = {}, {}, {}
    bar = tqdm(total=len(by_task) * len(scales), desc="taskres calibration", unit="scale", disable=not progress)
    for task, group in sorted(by_task.items()):
        comp[task] = sum(complexity(v.frames) for v in group) / len(group)
        curves[task] = {}
        for s in scales:
            bar.update()
            answers = []
            for start in range(0, len(group), batch_size):
                chunk = group[start : start + batch_size]
                items = [Item(v.frames, [s] * len(v.frames), Query.from_meta(v.meta, style)) for v in chunk]
                answers += backbone.generate(items, n=n, temperature=1.0).answers
            curves[task][s] = uncertainty(answers)
        need[task] = comp[task] * max(EPS, curves[task][min(scales)] - curves[task][max(scales)])
    total = sum(len(g) for g in by_task.values())
    return TaskRes(need, {t: len(g) / total for t, g in by_task.items()}, curves, comp)
