"""Relevance top-k: which frames it keeps at scale 1, what it does with the rest, and what it spends."""

import pytest
import torch

from resadapt.allocator.model import Allocator, AllocatorConfig
from resadapt.backbone.builtin import BuiltinBackbone, BuiltinConfig, BuiltinVideoQA
from resadapt.backbone.interface import Item, Query
from resadapt.backbone.resize import QWEN2_5_VL, GridSpec, plan_resize
from resadapt.data.synth import PALETTE, STRIPES
from resadapt.evaluate.budget import full_tokens
from resadapt.evaluate.sweep import EvalSet, frames_multiplier, topk_items, topk_variant
from resadapt.evaluate.topk import frame_query_match, relevance_topk
from tests.evaluate.test_sweep import clips, features

BUILTIN = GridSpec(factor=28, temporal_patch=1, min_pixels=28 * 28)
SIZE = (224, 224)  # 64 tokens per frame at scale 1, 1 at s_min = 0.1
S_MIN = 0.1


def embeddings(t: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(t, 6, generator=g), torch.randn(6, generator=g)


def test_the_match_is_the_allocators_own_similarity_input():
    g = torch.Generator().manual_seed(1)
    allocator = Allocator(AllocatorConfig(patch_dim=8, text_dim=8, width=16, heads=2, depth=1, aligned_dim=5)).eval()
    frame_embed, query_embed = torch.randn(3, 7, 5, generator=g), torch.randn(3, 5, generator=g)
    with torch.no_grad():
        out = allocator(torch.randn(3, 7, 4, 8, generator=g), torch.ones(3, 7, dtype=bool),
                        torch.randn(3, 2, 8, generator=g), torch.ones(3, 2, dtype=bool), frame_embed, query_embed)
    assert torch.allclose(frame_query_match(frame_embed, query_embed), out["relevance"])


def test_floor_keeps_the_k_most_similar_frames_at_scale_one_and_floors_the_rest():
    """r = 0.15 of 16 frames: B = 153.6 tokens. Two frames at 64 and 14 at the one-token floor cost 142; a third at
    64 would not fit, so the third most similar frame gets what is left (12.6 → 3×3 = 9 tokens)."""
    match = frame_query_match(*embeddings(16))
    budget = 0.15 * full_tokens(SIZE, 16, BUILTIN)
    sel = relevance_topk(match, SIZE, BUILTIN, budget, S_MIN, drop=False)
    rank = torch.argsort(match, descending=True).tolist()
    assert sel.k == 2 and sel.keep == list(range(16))
    scales = torch.tensor(sel.scales)
    assert {t for t in range(16) if scales[t] == 1.0} == set(rank[:2])
    plan = plan_resize(SIZE, sel.scales, BUILTIN)
    assert plan.tokens[rank[2]] == 9 and S_MIN < scales[rank[2]] < 1
    assert all(scales[t] == S_MIN and plan.tokens[t] == 1 for t in rank[3:])
    assert plan.total_tokens == 2 * 64 + 9 + 13 <= budget


def test_drop_keeps_the_k_most_similar_frames_and_encodes_nothing_else():
    """B = 153.6: two frames at 64; the 25.6 left buy the third most similar frame at 5×5 = 25 tokens."""
    match = frame_query_match(*embeddings(16))
    budget = 0.15 * full_tokens(SIZE, 16, BUILTIN)
    sel = relevance_topk(match, SIZE, BUILTIN, budget, S_MIN, drop=True)
    rank = torch.argsort(match, descending=True).tolist()
    assert sel.k == 2 and sel.keep == sorted(rank[:3])
    kept = dict(zip(sel.keep, sel.scales, strict=True))
    assert kept[rank[0]] == kept[rank[1]] == 1.0 and kept[rank[2]] < 1
    plan = plan_resize(SIZE, sel.scales, BUILTIN)
    assert plan.tokens[sel.keep.index(rank[2])] == 25 and plan.total_tokens == 153 <= budget


@pytest.mark.parametrize("r", [0.05, 0.1, 0.15, 0.25, 0.5, 1.0])
@pytest.mark.parametrize("drop", [False, True])
@pytest.mark.parametrize("grid", [BUILTIN, QWEN2_5_VL])
def test_top_k_never_spends_more_than_the_budget_and_keeps_whole_chunks(r, drop, grid):
    match = frame_query_match(*embeddings(16, seed=3))
    budget = r * full_tokens(SIZE, 16, grid)
    sel = relevance_topk(match, SIZE, grid, budget, S_MIN, drop)
    plan = plan_resize(SIZE, sel.scales, grid)
    floor = plan_resize(SIZE, [S_MIN] * (grid.temporal_patch if drop else 16), grid).total_tokens
    if floor <= budget:
        assert plan.total_tokens <= budget
    else:  # Qwen at r = 0.05: 8 chunks at the 4-token floor (32) are over 25.6; the row reports the realised 6.25%
        assert not drop and sel.k == 0 and sel.scales == [S_MIN] * 16
    p = grid.temporal_patch
    chunk_match = match.reshape(-1, p).mean(1)  # [T / p]
    top = torch.argsort(chunk_match, descending=True, stable=True)[: sel.k].tolist()
    full = sorted(t for c in top for t in range(c * p, (c + 1) * p))
    assert [t for t, s in zip(sel.keep, sel.scales, strict=True) if s == 1.0] == full
    for c in range(16 // p):  # a chunk is kept whole or not at all, and stays one chunk of the backbone
        frames = [t for t in range(c * p, (c + 1) * p) if t in sel.keep]
        assert len(frames) in (0, p) and len({sel.keep.index(t) // p for t in frames}) <= 1
    if r == 1.0:
        assert sel.k == 16 // p and sel.scales == [1.0] * 16


def test_a_budget_below_one_floored_chunk_still_keeps_the_top_chunk_and_says_what_it_spent():
    match = frame_query_match(*embeddings(16))
    sel = relevance_topk(match, SIZE, BUILTIN, 0.5, S_MIN, drop=True)
    assert sel.k == 0 and sel.keep == [int(match.argmax())] and sel.scales == [S_MIN]
    floored = relevance_topk(match, SIZE, BUILTIN, 10.0, S_MIN, drop=False)  # 16 one-token frames are over 10
    assert floored.k == 0 and floored.scales == [S_MIN] * 16


def test_features_without_a_shared_space_are_a_clear_error():
    with pytest.raises(ValueError, match="frame_embed width 0"):
        frame_query_match(torch.zeros(2, 4, 0), torch.zeros(2, 0))


def test_dropped_frames_keep_their_own_time_segments():
    config = BuiltinConfig(glyph_classes=list(STRIPES), colours=list(PALETTE), vocab=["which"], width=16,
                           stem_channels=8)
    backbone = BuiltinBackbone(BuiltinVideoQA(config).eval())
    videos = clips(3, 2)  # 8 frames of 112 px: 16 tokens each at scale 1
    evalset = EvalSet(videos, features(videos))
    queries = [Query.from_meta(v.meta) for v in videos]
    base = [full_tokens((112, 112), 8, backbone.grid)] * 3
    items = topk_items(evalset, backbone, 0.25, base, S_MIN, drop=True)
    match = frame_query_match(evalset.features.frame_embed, evalset.features.query_embed)
    for v, q, item, m in zip(videos, queries, items, match, strict=True):
        whole = Item(v.frames, [1.0] * 8, q).frame_segments()  # 2 s clip: frame t stands for [t/4, (t+1)/4)
        keep = sorted(torch.argsort(m, descending=True)[:2].tolist())  # 32 tokens: two frames at scale 1
        assert item.frame_segments() == [whole[t] for t in keep] == [(t / 4, (t + 1) / 4) for t in keep]
        assert torch.equal(item.frames, v.frames[keep]) and list(item.scales) == [1.0, 1.0]
    floored = topk_items(evalset, backbone, 0.25, base, S_MIN, drop=False)
    assert all(len(it.frames) == 8 and it.frame_segments() == [(t / 4, (t + 1) / 4) for t in range(8)]
               for it in floored)


def test_method_names_say_the_variant_and_the_frame_count():
    assert [topk_variant(m) for m in ("relevance_topk", "relevance_topk_drop_x4", "resadapt_x2", "random_drop")] == [
        "relevance_topk", "relevance_topk_drop", None, None]
    assert [frames_multiplier(m) for m in ("relevance_topk_x2", "resadapt_x4", "relevance_topk_drop")] == [2, 4, 1]
