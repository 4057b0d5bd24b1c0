import math

import pytest
import torch

from resadapt.capo.losses import concentration_loss, credit_loss, ppo_loss, similarity_loss


def test_ppo_at_ratio_one_is_minus_mean_advantage():
    logq = torch.zeros(2, 3, requires_grad=True)
    adv = torch.tensor([1.0, -2.0])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    loss = ppo_loss(logq, logq.detach(), adv, mask)
    assert loss.item() == pytest.approx(-(3 * 1.0 + 2 * -2.0) / 5)
    loss.backward()
    assert logq.grad[1, 2] == 0  # padded frame: no gradient


def test_ppo_clips_and_dual_clips():
    adv_pos, adv_neg = torch.tensor([1.0]), torch.tensor([-1.0])
    mask = torch.ones(1, 1)
    big = torch.tensor([[math.log(2.0)]])
    assert ppo_loss(big, torch.zeros(1, 1), adv_pos, mask).item() == pytest.approx(-1.28)  # clip high
    small = torch.tensor([[math.log(0.5)]])
    assert ppo_loss(small, torch.zeros(1, 1), adv_neg, mask).item() == pytest.approx(0.8)  # clip low for A < 0
    huge = torch.tensor([[math.log(50.0)]])
    assert ppo_loss(huge, torch.zeros(1, 1), adv_neg, mask).item() == pytest.approx(10.0)  # dual clip c = 10


def test_concentration_loss_is_mean_kappa_over_valid_frames():
    kappa, mask = torch.tensor([[4.0, 6.0, 100.0]]), torch.tensor([[1.0, 1.0, 0.0]])
    assert concentration_loss(kappa, mask).item() == 5.0


def test_similarity_loss_penalises_a_later_similar_frame_that_costs_more():
    states = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]], requires_grad=True)
    mask = torch.ones(1, 3)
    w = 1 / (1 + math.exp(-(1 - 0.55) / 0.12))  # identical neighbours
    rising = torch.tensor([[0.5, 1.0, 0.2]], requires_grad=True)
    expected = (math.log(1.0) - math.log(0.5) + 0.05 * w) * w / 2  # the dissimilar pair adds ~0
    loss = similarity_loss(states, rising, mask)
    assert loss.item() == pytest.approx(expected, rel=1e-3)
    falling = torch.tensor([[1.0, 0.5, 0.2]])
    assert similarity_loss(states, falling, mask).item() == pytest.approx(0.0, abs=1e-3)
    loss.backward()
    assert rising.grad[0, 1] > 0 and rising.grad[0, 0] < 0  # lower the later frame, raise the earlier one
    assert states.grad is None  # the gate is detached


def test_credit_loss_moves_the_match_toward_the_frame_the_reward_points_at():
    match = torch.zeros(2, 3, requires_grad=True)
    rho = torch.tensor([[0.1, 0.8, -0.2], [0.9, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])  # the second prompt's accuracy did not vary
    loss = credit_loss(match, rho, mask, torch.tensor(1.0))
    target = torch.softmax(rho[0] / 0.1, -1)
    assert loss.item() == pytest.approx(-(target * torch.log_softmax(torch.zeros(3), -1)).sum().item())
    loss.backward()
    assert match.grad[0].argmin() == 1 and torch.equal(match.grad[1], torch.zeros(3))  # descent raises frame 1
    assert credit_loss(match, rho, torch.zeros(2, 3)).item() == 0.0
