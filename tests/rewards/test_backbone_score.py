"""Format reward, DAPO overlong penalty and the backbone's score (method spec §7)."""

import pytest
import torch

from resadapt.config import RewardParams, TrainParams
from resadapt.data.sample import Video
from resadapt.rewards import backbone_score, format_reward, overlong_penalty


@pytest.mark.parametrize("response,fmt", [
    ("<think>a</think><answer>b</answer>", 1.0),
    ("  <think>\nlook at frame 3\n</think>\n\n<answer> \\boxed{B} </answer>\n", 1.0),
    ("<think>a</think>", 0.0),  # balanced (no answer tags at all), but not the full format
    ("B", 0.0),
    ("<think>a<answer>b</answer>", -1.0),  # <think> without </think>
    ("<think>a</think><answer>b", -1.0),
    ("</answer><think>a</think>", -1.0),
    ("<think>a</think><answer>b</answer> and more", 0.0),  # text outside the tags
    ("<think>a</think><answer>b</answer><answer>c</answer>", 0.0),  # balanced, two answers
    ("<answer>b</answer><think>a</think>", 0.0),  # wrong order
    ("<think><think>a</think></think><answer>b</answer>", 0.0),  # balanced, nested tags
])
def test_format_reward(response, fmt):
    assert format_reward(response) == fmt


@pytest.mark.parametrize("n_tokens,factor,penalty", [
    (1, 1.0, 0.0), (4096, 1.0, 0.0),  # up to expected = 8192 − 4096: no penalty
    (4097, 1.0, -1 / 4096), (6144, 1.0, -0.5), (8192, 1.0, -1.0), (8192, 0.5, -0.5), (8192, 0.0, 0.0),
])
def test_overlong_penalty(n_tokens, factor, penalty):
    assert overlong_penalty(n_tokens, 8192, 4096, factor) == pytest.approx(penalty)


def test_overlong_penalty_with_a_short_buffer():
    # expected = 100 − 20 = 80: 90 tokens are half-way down the ramp
    assert overlong_penalty(90, 100, 20, 1.0) == pytest.approx(-0.5)


def test_backbone_score_weights():
    w = dict(accuracy_weight=1.0, format_weight=0.2, max_tokens=8192, buffer=4096, factor=1.0)
    assert backbone_score("B", 1.0, 1, **w) == 1.0  # the built-in backbone's one-token answers: acc alone
    good = "<think>x</think><answer>\\boxed{B}</answer>"
    assert backbone_score(good, 1.0, 200, **w) == pytest.approx(1.2)
    assert backbone_score("<think>x<answer>B</answer>", 1.0, 200, **w) == pytest.approx(0.8)
    assert backbone_score(good, 1.0, 8192, **w) == pytest.approx(0.2)
    assert backbone_score(good, 0.5, 6144, **{**w, "accuracy_weight": 2.0}) == pytest.approx(1.0 + 0.2 - 0.5)


def test_video_scores_accuracy_and_backbone_score_with_params():
    meta = {"task": "mcq", "answer": "B", "options": ["cat", "dog", "cow"], "question": "Which animal?"}
    video = Video("k", torch.zeros(2, 28, 28, 3, dtype=torch.uint8), meta)
    response = "<think>it barks</think><answer>\\boxed{B}</answer>"
    assert video.score(response) == 1.0  # the Allocator's reward: accuracy only
    assert video.backbone_score(response, 10, RewardParams()) == pytest.approx(1.2)
    assert video.backbone_score(response, 10, RewardParams(format=0.5)) == pytest.approx(1.5)
    assert video.backbone_score("<answer>A", 8192, RewardParams()) == pytest.approx(0 - 0.2 - 1.0)
    assert TrainParams().reward == RewardParams()


def test_reward_params_refuse_a_buffer_longer_than_the_response():
    with pytest.raises(ValueError, match="overlong_buffer"):
        RewardParams(max_response_tokens=1000, overlong_buffer=2000)
