"""Scores of one method at one budget: mcq accuracy, grounding mIoU and R@{0.3, 0.5, 0.7}, visual tokens."""

from __future__ import annotations

from collections.abc import Sequence

RECALL_AT = (0.3, 0.5, 0.7)


def mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def summarise(correct: Sequence[float], ious: Sequence[float], tokens: Sequence[int],
              retention: Sequence[float]) -> dict:
    """``correct``: 1/0 per mcq sample; ``ious``: per grounding sample; ``tokens``/``retention``: per sample.

    Cost is the visual tokens a method sends: wall time per sample on a shared CPU measures the machine's load more
    than the method, and benchmarks/backbone_prefill.py measures how prefill time follows tokens."""
    out = {"accuracy": mean(correct), "miou": mean(ious)}
    for k in RECALL_AT:
        out[f"r@{k}"] = mean([1.0 if x >= k else 0.0 for x in ious])
    out |= {"retention": mean(retention), "retention_max": max(retention) if retention else None,
            "tokens": mean(tokens),
            "n_mcq": len(correct), "n_grounding": len(ious)}
    return out
