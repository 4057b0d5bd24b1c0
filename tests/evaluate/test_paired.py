"""Paired comparisons on constructed per-sample outcomes whose answer is known."""

import math

import pytest

from resadapt.evaluate.paired import bootstrap_ci, compare, mcnemar_exact
from resadapt.evaluate.report import markdown, metrics_json, paired, per_sample


def outcomes(both_right: int, only_a: int, only_b: int, both_wrong: int) -> tuple[dict, dict]:
    pairs = [(1.0, 1.0)] * both_right + [(1.0, 0.0)] * only_a + [(0.0, 1.0)] * only_b + [(0.0, 0.0)] * both_wrong
    return ({f"q{i}": a for i, (a, _) in enumerate(pairs)}, {f"q{i}": b for i, (_, b) in enumerate(pairs)})


def test_identical_methods_differ_by_nothing_and_not_significantly():
    a, _ = outcomes(60, 0, 0, 40)
    out = compare(a, dict(a))
    assert out == {"diff": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_mcnemar": 1.0, "significant": False, "n": 100}


def test_a_method_right_on_30_more_of_100_is_significantly_better():
    a, b = outcomes(40, 30, 0, 30)
    out = compare(a, b, seed=7)
    assert out["diff"] == pytest.approx(0.30) and out["significant"]
    assert out["p_mcnemar"] == pytest.approx(2 * 0.5**30)
    sd = math.sqrt(0.3 * 0.7 / 100)  # d_i ∈ {0, 1} with mean 0.3: the CI is about 0.3 ± 1.96 sd
    assert out["ci_low"] == pytest.approx(0.3 - 1.96 * sd, abs=0.02) and out["ci_high"] == pytest.approx(
        0.3 + 1.96 * sd, abs=0.02)
    reverse = compare(b, a, seed=7)
    assert reverse["diff"] == pytest.approx(-0.30) and reverse["significant"] and reverse["ci_high"] < 0


def test_a_small_difference_on_few_questions_is_not_significant():
    a, b = outcomes(40, 3, 1, 56)  # 2 points, 4 discordant questions
    out = compare(a, b)
    assert out["diff"] == pytest.approx(0.02) and not out["significant"] and out["ci_low"] < 0 < out["ci_high"]
    assert out["p_mcnemar"] == pytest.approx(2 * (1 + 4) / 16)


def test_mcnemar_exact_matches_the_binomial_tail():
    a, b = outcomes(5, 8, 2, 5)
    assert mcnemar_exact(list(a.values()), list(b.values())) == pytest.approx(2 * (1 + 10 + 45) / 1024)


def test_the_bootstrap_is_seeded():
    d = [0.9, 0.1, -0.35, 0.6, 0.05, -0.7, 0.2, 0.45]  # IoU differences: the resampled means vary with the seed
    assert bootstrap_ci(d, seed=3) == bootstrap_ci(d, seed=3) != bootstrap_ci(d, seed=4)


def test_different_samples_cannot_be_paired():
    with pytest.raises(ValueError, match="same samples"):
        compare({"a": 1.0, "b": 0.0}, {"a": 1.0, "c": 0.0})


def row(method, budget, correct: dict, retention: float) -> dict:
    acc = sum(correct.values()) / len(correct)
    return {"method": method, "budget": budget, "accuracy": acc, "miou": 1.0, "r@0.3": 1.0, "r@0.5": 1.0,
            "r@0.7": 1.0, "retention": retention, "retention_max": retention, "tokens": 1.0,
            "n_mcq": len(correct), "n_grounding": 1, "scores": {"mcq": correct, "grounding": {"g0": 1.0}}}


def test_the_report_compares_resadapt_with_top_k_and_fixed_scale_at_every_budget():
    good, bad = outcomes(40, 30, 0, 30)
    same = dict(good)
    rows = [row("full", 1.0, good, 1.0)]
    rows += [row("resadapt", r, good, r - 0.01) for r in (0.1, 0.5)]
    rows += [row("relevance_topk", 0.1, bad, 0.09), row("relevance_topk", 0.5, same, 0.5)]
    rows += [row("fixed_scale", r, bad, r) for r in (0.1, 0.5)]
    comparisons = paired(rows, target=0.15)
    assert set(comparisons) == {"resadapt_vs_relevance_topk", "resadapt_vs_fixed_scale"}  # no top-k drop rows
    topk = comparisons["resadapt_vs_relevance_topk"]
    assert topk["r010"]["diff"] == pytest.approx(0.3) and topk["r010"]["significant"]
    assert topk["r050"]["diff"] == 0 and not topk["r050"]["significant"]
    assert topk["r010"]["retention"] == pytest.approx(0.09) and topk["r010"]["retention_baseline"] == 0.09
    assert topk["summary"] == {"never_significantly_below": True, "max_diff_at_or_below_target": pytest.approx(0.3),
                               "max_diff_budget": 0.1, "max_diff_significant": True}
    worse = paired([row("resadapt", 0.1, bad, 0.1), row("fixed_scale", 0.1, good, 0.1)], target=0.15)
    assert not worse["resadapt_vs_fixed_scale"]["summary"]["never_significantly_below"]

    metrics = metrics_json(rows, {"target_budget": 0.15}, comparisons)
    assert "scores" not in metrics["resadapt"]["r010"]  # per-sample scores stay out of the DVC metrics
    assert metrics["paired"]["resadapt_vs_fixed_scale"]["r050"]["significant"] is True
    assert per_sample(rows)["relevance_topk"]["r010"]["mcq"] == bad
    text = markdown(rows, {"target_budget": 0.15}, [0.1, 0.5], comparisons=comparisons)
    assert "| ResAdapt vs Relevance top-k (floor) | 0.1 | +30.0 | [+" in text and "| yes |" in text
    assert "| ResAdapt vs Relevance top-k (floor) | 0.5 | +0.0 | [+0.0, +0.0] | 1 | no | 49.0 / 50.0 |" in text
