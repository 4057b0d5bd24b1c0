"""CAPO on the known-answer bandit: the stand-in backbone judges what each frame receives, and the project's own
loop with its default parameters learns where the needed frame is, with and without the similarity input (the fast
variants of benchmarks/capo_bandit.py)."""

import warnings

import pytest
import torch

from resadapt.backbone.interface import Item
from resadapt.capo.bandit import BanditSpec, from_train_params, make_bandit, measure, oracle_scales, run_bandit
from resadapt.config import TrainParams


@pytest.mark.parametrize("mode", ["where", "how_much", "two_frames"])
def test_the_stand_in_answers_right_only_when_every_needed_frame_gets_its_need(mode):
    train, heldout, backbone = make_bandit(BanditSpec(mode=mode, train_prompts=64, heldout_prompts=32))
    needs = heldout.needs
    assert ((needs > 0).sum(-1) == (2 if mode == "two_frames" else 1)).all()
    if mode == "how_much":  # the need varies and is what the needed frame's patches show
        assert 0.35 <= needs[needs > 0].min() and needs[needs > 0].max() <= 1.0 and needs[needs > 0].std() > 0.1
    v, need = heldout.videos[0], needs[0]
    t = int(need.argmax())
    low = torch.full((8,), 1.0)
    low[t] = need[t] - 0.1
    for scales, right in ((torch.ones(8), True), (low, False)):
        answers = backbone.generate([Item(v.frames, scales.tolist(), None, v.key)], n=200).answers[0]
        share = sum(a == "A" for a in answers) / 200
        assert (share > 0.85) if right else (share < 0.4)
    oracle = oracle_scales(needs, backbone.side, 0.1)
    m = measure(oracle, heldout, backbone, 0.1)
    assert m["meets_need"] == 1.0 and m["retention"] == pytest.approx(m["oracle_retention"])
    assert measure(torch.ones_like(needs), heldout, backbone, 0.1)["retention"] == pytest.approx(1.0)
    assert measure(torch.full_like(needs, 0.1), heldout, backbone, 0.1)["meets_need"] == 0.0


def test_how_much_on_two_frames_gives_each_its_own_need_and_the_query_names_both():
    _, heldout, _ = make_bandit(BanditSpec(mode="how_much", needed_frames=2, train_prompts=8, heldout_prompts=64))
    needs = heldout.needs
    assert ((needs > 0).sum(-1) == 2).all()
    pairs = needs[needs > 0].view(-1, 2)
    assert (pairs[:, 0] != pairs[:, 1]).all()  # drawn per frame, not one need per prompt
    assert (heldout.features.query_embed.sum(-1) == 2).all()  # the similarity points at both needed frames
    with pytest.raises(ValueError, match="1 to 2 frames"):
        BanditSpec(mode="how_much", needed_frames=3)


def default_loop_on_where(similarity: bool, steps: int, tmp_path) -> tuple[dict, float]:
    """The held-out row after ``steps`` steps of the default loop on "where", and the Allocator's s_min."""
    torch.set_num_threads(1)
    spec = BanditSpec(mode="where", similarity=similarity)
    loop, capo, alloc = from_train_params(TrainParams(), spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return run_bandit(spec, loop, capo, alloc, [steps], tmp_path)[0][-1], alloc.s_min


@pytest.mark.slow
def test_the_default_loop_learns_where_from_reward_with_the_similarity_input(tmp_path):
    m, s_min = default_loop_on_where(True, 150, tmp_path)
    assert m["meets_need"] >= 0.95 and m["other_scale"] <= s_min + 0.1, m
    assert m["retention"] <= 2 * m["oracle_retention"] and m["targets_met"]


@pytest.mark.slow
def test_without_the_similarity_input_the_allocators_own_match_learns_where_from_reward(tmp_path):
    # 1000 steps (~45 s): at 600 one machine measured top-1 0.97 and another 0.949 with 0.67 of the needs met, the
    # trajectory differing with the CPU's float rounding; the target (3000 steps) is the benchmark's
    m, _ = default_loop_on_where(False, 1000, tmp_path)
    assert m["match_top1"] >= 0.95, m  # L_credit taught its own cross-attention which frame is asked about
    assert m["meets_need"] >= 0.8 and m["other_scale"] <= 0.3, m
