import pytest
import torch

from resadapt.evaluate.taskres import TaskRes, complexity, uncertainty


def test_uncertainty_is_one_minus_the_modal_share():
    assert uncertainty([["A"] * 4, ["A", "B", "A", "C"]]) == pytest.approx((0 + 0.5) / 2)


def test_complexity_grows_with_texture():
    flat = torch.full((2, 32, 32, 3), 128, dtype=torch.uint8)
    stripes = flat.clone()
    stripes[:, ::3] = 0
    assert complexity(flat) == 0 and complexity(stripes) > 0.1


@pytest.mark.parametrize("r", [0.05, 0.15, 0.5, 0.9, 1.0])
def test_per_task_retention_keeps_the_mean_budget_and_favours_the_needier_task(r):
    tr = TaskRes(need={"mcq": 0.3, "grounding": 0.01}, share={"mcq": 0.75, "grounding": 0.25})
    mean = sum(tr.share[t] * tr.retention(t, r) for t in tr.share)
    assert mean == pytest.approx(r)
    assert tr.retention("mcq", r) >= tr.retention("grounding", r)
    assert all(0 <= tr.retention(t, r) <= 1 for t in tr.share)
