"""The Qwen adapter on tiny random-weight Qwen2.5-VL and Qwen3-VL checkpoints built offline in the test."""

import pytest
import torch

from resadapt.backbone.interface import Item, Query
from resadapt.backbone.qwen import QwenBackbone
from resadapt.backbone.tiny_qwen import build


@pytest.fixture(scope="module", params=["qwen2_5_vl", "qwen3_vl"])
def backbone(request, tmp_path_factory):
    path = build(request.param, tmp_path_factory.mktemp(request.param))
    return QwenBackbone.load(str(path), device="cpu", max_new_tokens=5)


def items(grid, n_frames=5):
    torch.manual_seed(0)
    side = grid.factor * 8
    frames = torch.randint(0, 256, (n_frames, side, side, 3), dtype=torch.uint8)
    return [
        Item(frames, [1.0, 0.3, 0.5, 1.0, 0.2][:n_frames],
             Query("Which stripe?", ("vertical", "horizontal"), "mcq", 2.5)),
        Item(frames, [0.2] * n_frames, Query("When is the red frame?", (), "grounding", 2.5)),
    ]


def test_grid_comes_from_the_checkpoint(backbone):
    expected = 28 if "Qwen2" in type(backbone.processor).__name__ else 32
    assert backbone.grid.factor == expected and backbone.grid.temporal_patch == 2


def test_tokens_equal_the_formula_with_mixed_chunk_sizes(backbone):
    batch = items(backbone.grid)
    inputs, plans = backbone.encode(batch)
    f = backbone.grid.factor
    assert len(set(plans[0].sizes)) == 3  # three chunks, three different sizes in one prompt
    assert [p.total_tokens for p in plans] == [sum((h // f) * (w // f) for h, w in p.sizes) for p in plans]
    patch = backbone.processor.video_processor.patch_size
    grids = inputs["video_grid_thw"].tolist()
    assert grids == [[1, h // patch, w // patch] for p in plans for h, w in p.sizes]
    assert backbone.realised_tokens(inputs) == sum(p.total_tokens for p in plans)
    video_token = backbone.model.config.video_token_id
    assert int((inputs["input_ids"] == video_token).sum()) == sum(p.total_tokens for p in plans)


def test_sampled_log_probs_equal_scored_log_probs(backbone):
    batch = items(backbone.grid)
    rollouts = backbone.generate(batch, n=3)
    assert [len(a) for a in rollouts.answers] == [3, 3] and rollouts.logprobs.shape == (2, 3)
    scored = backbone.answer_logprobs(batch, rollouts.token_ids)
    assert torch.allclose(scored, rollouts.logprobs, atol=1e-3)
    logp, mask = backbone.answer_token_logprobs(batch[:1], rollouts.token_ids[:1])
    assert mask[0].sum(-1).tolist() == [len(ids) for ids in rollouts.token_ids[0]]
    assert ((logp <= 0) | ~mask).all()
    assert scored.requires_grad
    scored.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in backbone.model.parameters())


def test_greedy_is_deterministic_and_text_answers_score(backbone):
    batch = items(backbone.grid, n_frames=4)
    a, b = backbone.generate(batch, greedy=True), backbone.generate(batch, greedy=True)
    assert a.answers == b.answers
    scores = backbone.answer_logprobs(batch, [["A", "B"], ["[0, 1]", "[1, 2]"]])
    assert scores.shape == (2, 2) and torch.isfinite(scores).all() and (scores < 0).all()


def test_a_sampled_answer_never_holds_a_media_placeholder(backbone):
    """A sampled video pad token would be read back as a video token when the answer is scored (found on a GPU)."""
    video = backbone.model.config.video_token_id
    assert video in backbone.media_tokens
    head = backbone.model.get_output_embeddings()
    saved = head.weight.data[video].clone()
    head.weight.data[video] = head.weight.data[video].sign() * 50  # the placeholder becomes the likeliest token
    try:
        rollouts = backbone.generate(items(backbone.grid), n=4)
    finally:
        head.weight.data[video] = saved
    assert not any(t in backbone.media_tokens for rows in rollouts.token_ids for ids in rows for t in ids)
