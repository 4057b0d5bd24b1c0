"""Each method's budget accounting: what it spends, measured on the realised grid."""

import math

import numpy as np
import pytest
import torch

from resadapt.backbone.resize import QWEN2_5_VL, QWEN3_VL, GridSpec, plan_resize
from resadapt.evaluate.budget import (
    fixed_scales,
    full_tokens,
    match_budget,
    match_budgets,
    match_split_budget,
    random_keep,
    uniform_scale,
)

BUILTIN = GridSpec(factor=28, temporal_patch=1, min_pixels=28 * 28)
SIZE = (224, 224)


@pytest.mark.parametrize("r", [0.05, 0.1, 0.15, 0.25, 0.5, 1.0])
def test_fixed_scale_is_sqrt_r_and_lands_near_r(r):
    scales = fixed_scales(16, r)
    assert scales == [math.sqrt(r)] * 16
    realised = plan_resize(SIZE, scales, BUILTIN).retention
    side = round(math.floor(224 * math.sqrt(r)) / 28) * 28  # floor to pixels, then the nearest cell (half to even)
    assert realised == pytest.approx(max(side, 28) ** 2 / 224**2)
    assert abs(realised - r) <= 0.07  # the rounding FixedScale pays; the sweep reports the realised value


@pytest.mark.parametrize("r", [0.05, 0.1, 0.15, 0.25, 0.5, 1.0])
def test_random_drop_keeps_round_r_t_frames_so_retention_is_k_over_t(r):
    keep = random_keep(16, r, np.random.default_rng(0))
    k = max(1, round(r * 16))
    assert len(keep) == k == len(set(keep)) and keep == sorted(keep) and all(0 <= i < 16 for i in keep)
    tokens = plan_resize(SIZE, [1.0] * k, BUILTIN).total_tokens
    assert tokens / full_tokens(SIZE, 16, BUILTIN) == k / 16


@pytest.mark.parametrize("grid", [BUILTIN, QWEN2_5_VL])
@pytest.mark.parametrize("r", [0.05, 0.1, 0.15, 0.25, 0.5, 1.0])
def test_resadapt_rescaling_spends_at_most_the_budget_and_keeps_the_ranking(grid, r):
    policy = torch.tensor([0.15] * 7 + [1.0] + [0.3] * 8)
    budget = r * full_tokens(SIZE, 16, grid)
    scales = match_budget(policy, SIZE, grid, budget, s_min=0.1)
    tokens = plan_resize(SIZE, scales.tolist(), grid).total_tokens
    floor = plan_resize(SIZE, [0.1] * 16, grid).total_tokens
    wanted = policy.clamp(0.1, 1.0)
    policy_tokens = plan_resize(SIZE, wanted.tolist(), grid).total_tokens
    if floor <= budget:
        assert tokens <= budget
        if grid is BUILTIN and budget >= policy_tokens:  # what it asks fits: no frame gets less, the top one 1
            assert scales[7] == 1.0 and bool((scales >= wanted - 1e-6).all())
    else:
        assert torch.allclose(scales, torch.full((16,), 0.1))  # infeasible: the floor, reported as measured
    assert scales.max() <= 1.0 and scales.min() >= 0.1
    if policy_tokens > budget and floor <= budget:  # the rescaled policy, raised at most to what it asked for
        uniform = match_budget(policy, SIZE, grid, budget, s_min=0.1, fill=False)
        assert bool((scales >= uniform - 1e-6).all() and (scales <= wanted + 1e-6).all())
        assert sorted(range(16), key=lambda t: -float(scales[t]))[0] == 7  # the top frame stays on top


def test_a_budget_above_what_the_policy_asks_lifts_every_frame_up_to_scale_one():
    scales = match_budget(torch.tensor([0.2, 0.5]), SIZE, BUILTIN, full_tokens(SIZE, 2, BUILTIN), s_min=0.1)
    assert torch.equal(scales, torch.ones(2))


def test_two_x_frames_share_the_budget_of_the_one_x_clip_and_the_first_copy_takes_what_rounding_leaves():
    """ResAdapt at 2x the frames is held to r times the 1x clip's full tokens, not its own. Two copies of the
    queried scene at full size and 30 one-cell frames (158 tokens) overspend 15% of 1024 (153.6): the uniform rescale
    shrinks both copies alike, and what the grid's rounding leaves lifts the first copy toward its ask."""
    budget = 0.15 * full_tokens(SIZE, 16, BUILTIN)
    policy = torch.full((32,), 0.12)
    policy[14] = policy[15] = 1.10  # two copies of one scene: the uniform rescale cannot tell them apart
    scales = match_budget(policy, SIZE, BUILTIN, budget, s_min=0.1)
    plan = plan_resize(SIZE, scales.tolist(), BUILTIN)
    plain = match_budget(policy, SIZE, BUILTIN, budget, s_min=0.1, fill=False)
    tokens = plan_resize(SIZE, plain.tolist(), BUILTIN).tokens
    assert tokens[14] == tokens[15] < 64 and sum(tokens) <= budget
    assert plan.total_tokens <= budget and plan.tokens[14] > tokens[14] and plan.tokens[15] == tokens[15]
    assert budget - plan.total_tokens < plan.tokens[14]  # no room was left that the first copy could still take


def test_uniform_scale_never_overspends():
    for r in (0.05, 0.1, 0.15, 0.2, 0.25, 0.5, 1.0):
        s = uniform_scale(SIZE, 16, BUILTIN, r)
        assert plan_resize(SIZE, [s] * 16, BUILTIN).retention <= r + 1e-9


@pytest.mark.parametrize("grid", [QWEN2_5_VL, QWEN3_VL, GridSpec(factor=28, temporal_patch=1, min_pixels=784)])
@pytest.mark.parametrize("fill", [True, False])
def test_clips_searched_side_by_side_get_exactly_what_each_gets_alone(grid, fill):
    gen = torch.Generator().manual_seed(3)
    for n_frames, size in ((16, (224, 224)), (7, (360, 640)), (1, (90, 1200))):
        scales = torch.rand(12, n_frames, generator=gen) * 1.4 + 0.05
        scales[0] = 1.0  # a clip the budget covers
        full = full_tokens(size, n_frames, grid)
        budgets = [r * full for r in torch.rand(12, generator=gen).tolist()]
        budgets[1] = 0.0  # one the floor already overspends
        together = match_budgets(scales, size, grid, budgets, 0.1, fill=fill)
        for row, budget, got in zip(scales, budgets, together, strict=True):
            assert torch.equal(got, match_budget(row, size, grid, budget, 0.1, fill=fill))
            assert plan_resize(size, got.tolist(), grid).total_tokens <= max(budget, plan_resize(
                size, [0.1] * n_frames, grid).total_tokens)


@pytest.mark.parametrize("r", [0.05, 0.15, 0.5])
def test_a_split_budget_is_met_on_average_with_one_factor_so_clips_keep_their_policys_shares(r):
    gen = torch.Generator().manual_seed(5)
    scales = [torch.rand(16, generator=gen) * 0.6 + 0.1 for _ in range(5)] + [torch.rand(7, generator=gen) + 0.1]
    sizes = [SIZE] * 5 + [(360, 640)]
    scales[2][:4] = 1.0  # one clip asks for far more than the others
    budget = r * sum(full_tokens(size, len(s), QWEN2_5_VL) for s, size in zip(scales, sizes, strict=True))
    out = match_split_budget(scales, sizes, QWEN2_5_VL, budget, 0.1)
    spent = [plan_resize(size, s.tolist(), QWEN2_5_VL).total_tokens for s, size in zip(out, sizes, strict=True)]
    assert sum(spent) <= budget
    per_clip = [t / full_tokens(size, len(s), QWEN2_5_VL) for t, s, size in zip(spent, out, sizes, strict=True)]
    assert per_clip[2] == max(per_clip)  # the clip that asks most gets most: not r each
    ratios = {round(float(o[k] / s[k]), 4) for o, s in zip(out, scales, strict=True) for k in range(len(s))
              if 0.1 + 1e-6 < float(o[k]) < 1.0 - 1e-6}
    assert len(ratios) == 1  # one factor c for every frame it neither floors nor caps



def test_a_split_budget_below_the_floor_floors_every_clip_and_an_ample_one_keeps_the_policy():
    scales = [torch.full((4,), 0.5), torch.full((4,), 0.3)]
    floored = match_split_budget(scales, [SIZE] * 2, BUILTIN, 0.0, 0.1)
    assert all(torch.allclose(s, torch.full((4,), 0.1)) for s in floored)
    ample = match_split_budget(scales, [SIZE] * 2, BUILTIN, 1e9, 0.1, s_max=1.0)
    assert all(torch.allclose(s, torch.ones(4)) for s in ample)  # c at its top: every frame capped at s_max
