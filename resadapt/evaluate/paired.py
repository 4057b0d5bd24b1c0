"""Paired comparisons of two methods on the same samples: is a difference in MCQ accuracy real?

For per-sample correctness a_i, b_i ∈ {0, 1} of methods A and B on the same n questions, d_i = a_i − b_i:

    Δ       = mean_i d_i                                       (accuracy difference; ×100 = points)
    CI      = the 2.5% and 97.5% quantiles of mean(d_{i*}) over ``n_boot`` resamples i* of the n indices with
              replacement (paired percentile bootstrap, seeded): both methods are resampled together, so what the
              questions share (easy or hard for both) cancels
    p       = McNemar's exact test: with n₁₀ questions only A gets right and n₀₁ only B, under H₀ each discordant
              question is A's with probability ½:  p = min(1, 2 · P[X ≤ min(n₁₀, n₀₁)]),  X ~ Bin(n₁₀ + n₀₁, ½)
    significant: the CI excludes 0 (the sign of Δ says which way)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

N_BOOT = 10_000
LEVEL = 0.95


def bootstrap_ci(d: Sequence[float], n_boot: int = N_BOOT, level: float = LEVEL, seed: int = 0) -> tuple[float, float]:
    """The paired percentile bootstrap interval of mean(d)."""
    d = np.asarray(d, dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(d), size=(n_boot, len(d)))  # [n_boot, n]
    means = d[idx].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def mcnemar_exact(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided exact McNemar p-value for paired 0/1 outcomes (1.0 when no question is discordant)."""
    n10 = sum(1 for x, y in zip(a, b, strict=True) if x > y)
    n01 = sum(1 for x, y in zip(a, b, strict=True) if x < y)
    n = n10 + n01
    tail = sum(math.comb(n, i) for i in range(min(n10, n01) + 1)) / 2**n
    return min(1.0, 2 * tail)


def compare(ours: Mapping[str, float], other: Mapping[str, float], seed: int = 0) -> dict:
    """Δ, its CI, McNemar's p and significance for two methods' per-sample correctness {key: 0/1}."""
    if set(ours) != set(other):
        raise ValueError(f"paired comparison needs the same samples: {len(set(ours) ^ set(other))} key(s) differ")
    if not ours:
        raise ValueError("paired comparison of no samples")
    keys = sorted(ours)
    a, b = [ours[k] for k in keys], [other[k] for k in keys]
    d = [x - y for x, y in zip(a, b, strict=True)]
    lo, hi = bootstrap_ci(d, seed=seed)
    return {"diff": sum(d) / len(d), "ci_low": lo, "ci_high": hi, "p_mcnemar": mcnemar_exact(a, b),
            "significant": lo > 0 or hi < 0, "n": len(d)}
