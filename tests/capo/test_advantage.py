"""Each CAPO formula against hand-computed values, degenerate groups included."""

import math

import pytest
import torch

from resadapt.capo.advantage import (
    SPREAD_FLOOR,
    CapoCoefficients,
    base_advantage,
    capo_advantage,
    cost_pivot,
    cost_shaping,
    frame_advantage,
    grpo_advantage,
    proxy_cost,
    spend_correlation,
)

K = CapoCoefficients()


def sig(x):
    return 1 / (1 + math.exp(-x))


def test_proxy_cost_is_normalised_mean_scale_over_valid_frames():
    scales = torch.tensor([[1.0, 0.2, 9.0], [2.0, 2.0, 2.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    cost = proxy_cost(scales, mask, 0.2, 2.0)
    assert cost[0].item() == pytest.approx((0.6 - 0.2) / (1.8 + 1e-6))
    assert cost[1].item() == pytest.approx(1.0)  # clipped


def test_base_advantage_z_scores_with_population_std():
    acc = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    assert base_advantage(acc)[0].tolist() == pytest.approx([1, -1, 1, -1], abs=1e-5)
    acc = torch.tensor([[1.0, 0.0, 0.0]])  # mean 1/3, std √2/3
    expected = [(1 - 1 / 3) / (math.sqrt(2) / 3 + 1e-6), (-1 / 3) / (math.sqrt(2) / 3 + 1e-6)]
    assert base_advantage(acc)[0, :2].tolist() == pytest.approx(expected)


@pytest.mark.parametrize("acc", [[[1.0, 1.0, 1.0]], [[0.0, 0.0, 0.0]], [[0.7]]])
def test_degenerate_groups_have_no_base_advantage(acc):
    assert torch.equal(base_advantage(torch.tensor(acc)), torch.zeros(1, len(acc[0])))


def test_pivot_mixes_group_cost_and_target():
    cost = torch.tensor([[0.2, 0.6]], requires_grad=True)
    pivot = cost_pivot(cost, 0.5, 0.4)
    assert pivot.item() == pytest.approx(0.5 * 0.4 + 0.5 * 0.4) and not pivot.requires_grad


def test_shaping_by_hand_both_signs():
    acc, cost, pivot = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.1, 0.1]]), torch.tensor([[0.4]])
    r = sig((0.4 - 0.1) / 0.15) - 0.5  # cheap: r_small > 0
    s = cost_shaping(acc, cost, pivot, K)
    assert s[0, 0].item() == pytest.approx(0.7 * 1.0 * r)  # correct and cheap: bonus
    assert s[0, 1].item() == pytest.approx(-1.3 * 1.0 * r)  # wrong and cheap: penalty (reference code)
    paper = cost_shaping(acc, cost, pivot, CapoCoefficients(incorrect_shaping="fewer_pixels"))
    assert paper[0, 1].item() == pytest.approx(+1.3 * r)  # paper prose: wrong-and-expensive is what is penalised
    low = cost_shaping(torch.tensor([[0.01]]), torch.tensor([[0.1]]), pivot, K)
    assert low.item() == pytest.approx(-1.3 * 0.99 * r)  # acc 0.01 is incorrect (≤ 0.35)
    tiny = cost_shaping(torch.tensor([[0.36]]), torch.tensor([[0.1]]), pivot, K)
    assert tiny.item() == pytest.approx(0.7 * max(0.36**0.5, 0.05) * r)


def test_capo_advantage_by_hand_and_floor():
    acc = torch.tensor([[1.0, 0.0]])
    cost = torch.tensor([[0.9, 0.1]])
    pivot = 0.5 * 0.5 + 0.5 * 0.4
    a_hat = [1.0, -1.0]
    s_correct = 0.7 * 1.0 * (sig((pivot - 0.9) / 0.15) - 0.5)
    s_wrong = -1.3 * 1.0 * (sig((pivot - 0.1) / 0.15) - 0.5)
    expected = [a_hat[0] + 0.25 * s_correct - 0.05 * 0.9, a_hat[1] + 0.25 * s_wrong - 0.05 * 0.1]
    assert capo_advantage(acc, cost).tolist()[0] == pytest.approx(expected, abs=1e-5)
    # all correct and expensive: Â = 0 and the cost terms are negative, but the floor keeps correct allocations ≥ 0.001
    floored = capo_advantage(torch.tensor([[1.0, 1.0]]), torch.tensor([[0.9, 1.0]]))
    assert floored[0].tolist() == pytest.approx([0.001, 0.001])
    # all wrong: only the cost terms act, and (reference sign) the cheaper wrong allocation gets the lower advantage
    wrong = capo_advantage(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.1, 0.9]]))
    assert wrong[0, 0] < wrong[0, 1]
    # M = 1: no group, no advantage (spec §4)
    assert capo_advantage(torch.tensor([[1.0]]), torch.tensor([[0.4]])).item() == 0.0


def test_grpo_advantage():
    assert grpo_advantage(torch.tensor([[1.0, 0.0]]))[0].tolist() == pytest.approx([1, -1], abs=1e-5)
    assert torch.equal(grpo_advantage(torch.tensor([[1.0]])), torch.zeros(1, 1))


def test_allocation_credit_broadcasts_capo_to_every_valid_frame():
    acc, scales = torch.tensor([[1.0, 0.0]]), torch.tensor([[[1.0, 0.2, 0.6], [0.2, 0.2, 9.0]]])
    mask = torch.tensor([[[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]])
    adv = frame_advantage(acc, scales, mask, 0.2, 2.0, K)
    expected = capo_advantage(acc, proxy_cost(scales, mask, 0.2, 2.0), K)
    assert adv[0, 0].tolist() == pytest.approx([expected[0, 0].item()] * 3)
    assert adv[0, 1].tolist() == pytest.approx([expected[0, 1].item()] * 2 + [0.0])


def test_frame_cost_credits_each_frame_with_its_own_cost_in_its_group():
    k = CapoCoefficients(credit="frame_cost", frame_coef=0.5, frame_gate=False)
    acc = torch.tensor([[1.0, 1.0]])  # all correct: Â = 0
    scales = torch.tensor([[[1.1, 0.2], [0.2, 0.2]]])  # frame 0 differs between the allocations, frame 1 does not
    mask = torch.ones(1, 2, 2)
    base = capo_advantage(acc, proxy_cost(scales, mask, 0.2, 2.0), k)[0].tolist()
    adv = frame_advantage(acc, scales, mask, 0.2, 2.0, k)
    # frame 0: ŝ = 0.5 and 0, z over the group = −1 and +1; frame 1: no spread, no frame term
    assert adv[0, :, 0].tolist() == pytest.approx([base[0] - 0.5, base[1] + 0.5], abs=1e-4)
    assert adv[0, :, 1].tolist() == pytest.approx(base)
    # a spread below SPREAD_FLOOR (in ŝ) is divided by the floor: the push fades instead of growing without bound
    close = torch.tensor([[[0.2 + 0.018, 0.2], [0.2, 0.2]]])  # ŝ = 0.01 and 0: deviations ±0.005
    base = capo_advantage(acc, proxy_cost(close, mask, 0.2, 2.0), k)[0].tolist()
    small = frame_advantage(acc, close, mask, 0.2, 2.0, k)
    push = 0.5 * 0.005 / SPREAD_FLOOR
    assert small[0, :, 0].tolist() == pytest.approx([base[0] - push, base[1] + push], abs=1e-4)


@pytest.mark.parametrize("blame", [1.0, 0.75, 0.0])
def test_frame_cost_gate_credits_cheap_frames_of_right_answers_and_blames_those_of_wrong_ones(blame):
    k = CapoCoefficients(credit="frame_cost", frame_coef=0.5, frame_blame=blame)
    scales, mask = torch.tensor([[[1.1], [0.2]]]), torch.ones(1, 2, 1)  # z(−ŝ) = −1, +1
    wrong = -1.3 * blame  # β scales the blame on wrong allocations only
    for acc, g in (([[1.0, 1.0]], [0.7, 0.7]), ([[0.0, 0.0]], [wrong, wrong]), ([[0.25, 1.0]], [wrong * 0.75, 0.7])):
        acc = torch.tensor(acc)
        base = capo_advantage(acc, proxy_cost(scales, mask, 0.2, 2.0), k)[0].tolist()
        adv = frame_advantage(acc, scales, mask, 0.2, 2.0, k)[0, :, 0].tolist()
        assert adv == pytest.approx([base[0] - 0.5 * g[0], base[1] + 0.5 * g[1]], abs=1e-4)


def test_capo_frame_follows_the_frame_priority():
    k = CapoCoefficients(credit="capo_frame", frame_coef=0.25)
    acc, mask = torch.tensor([[0.0, 0.0]]), torch.ones(1, 2, 2)
    scales = torch.tensor([[[2.0, 0.2], [0.2, 2.0]]])
    priority = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])  # frame 0 matters, frame 1 does not
    adv = frame_advantage(acc, scales, mask, 0.2, 2.0, k, priority)
    base = capo_advantage(acc, proxy_cost(scales, mask, 0.2, 2.0), k)[0].tolist()
    # allocation 0 spends on frame 0 (R = 1, 1 → no spread), allocation 1 on frame 1 (R = 0, 0)
    assert adv[0, 0].tolist() == pytest.approx([base[0]] * 2)
    mixed = frame_advantage(acc, torch.tensor([[[2.0, 2.0], [0.2, 0.2]]]), mask, 0.2, 2.0, k, priority)
    base = capo_advantage(acc, torch.tensor([[1.0, 0.0]]), k)[0]
    assert mixed[0, 0].tolist() == pytest.approx([base[0].item() + 0.25, base[0].item() - 0.25], abs=1e-4)
    with pytest.raises(ValueError, match="priority"):
        frame_advantage(acc, scales, mask, 0.2, 2.0, k)


def test_spend_correlation_is_each_frames_correlation_of_its_spend_with_accuracy():
    acc = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.5, 0.5, 0.5, 0.5]])  # [B=2, M=4]
    needed = torch.tensor([1.2, 0.1, 1.2, 0.1])  # spends more exactly when the answer is right
    against = torch.tensor([0.1, 1.2, 0.1, 1.2])
    flat = torch.full((4,), 0.6)  # spends the same everywhere
    scales = torch.stack([torch.stack([needed, against, flat], -1)] * 2)  # [B, M, T=3]
    rho, varied = spend_correlation(acc, scales, torch.ones_like(scales), 0.1, 1.2)
    assert torch.allclose(rho[0], torch.tensor([1.0, -1.0, 0.0]), atol=1e-5)
    assert varied.tolist() == [True, False] and torch.equal(rho[1], torch.zeros(3))
