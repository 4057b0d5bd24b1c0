"""The label oracles: needed chunks at their need (with the margin) or at 1, cheapest first, within the budget."""

import math

import pytest
import torch

from resadapt.allocator.model import Allocator, AllocatorConfig
from resadapt.backbone.builtin import BuiltinBackbone, BuiltinConfig, BuiltinVideoQA
from resadapt.backbone.resize import QWEN2_5_VL, plan_resize
from resadapt.data.synth import PALETTE, STRIPES
from resadapt.evaluate.budget import full_tokens
from resadapt.evaluate.oracle import NEED_MARGIN, labelled, oracle_scales
from resadapt.evaluate.sweep import EvalSet, sweep
from tests.evaluate.test_sweep import clips, features

SIZE = (224, 224)
S_MIN = 0.1


def meta(needs: list[float], needed: list[int], task: str = "mcq") -> dict:
    colours = list(PALETTE)[: len(needs)]
    frames = [{"colour": c, "glyph": "vertical", "need": n} for c, n in zip(colours, needs, strict=True)]
    return {"id": "v0", "task": task, "frame_indices": list(range(len(needs))),
            "meta": {"frames": frames, "needed_frames": needed, "target_frame": needed[0]}}


def test_an_ample_budget_gives_each_needed_chunk_its_margin_over_the_need_and_floors_the_rest():
    m = meta([0.4, 0.5, 0.9, 0.3, 0.6, 0.7], needed=[1, 4])  # Qwen chunks: (0, 1) (2, 3) (4, 5)
    budget = full_tokens(SIZE, 6, QWEN2_5_VL)
    s = oracle_scales(m, 6, SIZE, QWEN2_5_VL, budget, S_MIN)
    assert s.tolist() == pytest.approx([0.5 * NEED_MARGIN] * 2 + [S_MIN] * 2 + [min(1.0, 0.6 * NEED_MARGIN)] * 2)
    where = oracle_scales(m, 6, SIZE, QWEN2_5_VL, budget, S_MIN, margin=math.inf)
    assert where.tolist() == pytest.approx([1.0, 1.0, S_MIN, S_MIN, 1.0, 1.0])


def test_a_tight_budget_serves_the_cheapest_needed_chunk_first_and_never_overspends():
    m = meta([0.4, 0.9, 0.5, 0.3], needed=[1, 2])  # chunk 0 capped at 1 (0.9 · 1.25), chunk 1 at 0.625
    floor = plan_resize(SIZE, [S_MIN] * 4, QWEN2_5_VL).total_tokens
    cheap = plan_resize(SIZE, [S_MIN, S_MIN, 0.625, 0.625], QWEN2_5_VL).total_tokens
    s = oracle_scales(m, 4, SIZE, QWEN2_5_VL, cheap + 1, S_MIN)
    assert s[2:].tolist() == pytest.approx([0.625, 0.625])  # the cheap chunk is read
    assert S_MIN <= float(s[0]) < 1.0  # the dear one gets what is left, below its cap
    assert plan_resize(SIZE, s.tolist(), QWEN2_5_VL).total_tokens <= cheap + 1
    assert oracle_scales(m, 4, SIZE, QWEN2_5_VL, floor, S_MIN).tolist() == pytest.approx([S_MIN] * 4)


def test_grounding_questions_read_border_colours_so_every_frame_stays_at_the_floor():
    m = meta([0.9, 0.8], needed=[0], task="grounding")
    assert oracle_scales(m, 2, SIZE, QWEN2_5_VL, 1e9, S_MIN).tolist() == pytest.approx([S_MIN] * 2)


def test_videos_without_the_generators_labels_have_no_oracle():
    unlabelled = {"id": "mine-7", "task": "mcq", "frame_indices": [0, 1], "meta": {}}
    with pytest.raises(ValueError, match="'mine-7'.*drop oracle"):
        oracle_scales(unlabelled, 2, SIZE, QWEN2_5_VL, 100.0, S_MIN)
    videos = clips(2, 1)
    assert labelled(videos)
    videos[1].meta["meta"] = {}
    assert not labelled(videos)


def test_the_sweep_runs_both_oracles_within_every_budget():
    torch.manual_seed(0)
    config = BuiltinConfig(glyph_classes=list(STRIPES), colours=list(PALETTE), vocab=["which", "border"], width=16,
                           stem_channels=8)
    backbone = BuiltinBackbone(BuiltinVideoQA(config).eval())
    videos = clips(4, 1)
    for v in videos:  # the test clips carry no needs: every glyph needs scale 0.4
        for frame in v.meta["meta"]["frames"]:
            frame["need"] = 0.4
    allocator = Allocator(AllocatorConfig(patch_dim=16, text_dim=8, width=16, heads=2, depth=1, aligned_dim=3,
                                          s_min=S_MIN)).eval()
    rows = sweep(backbone, allocator, {1: EvalSet(videos, features(videos))}, [0.25, 1.0], ["oracle", "oracle_where"],
                 None, progress=False)
    assert [(r["method"], r["budget"]) for r in rows] == [("oracle", 0.25), ("oracle", 1.0), ("oracle_where", 0.25),
                                                         ("oracle_where", 1.0)]
    for r in rows:
        assert r["retention"] <= r["budget"] + 1e-9 and r["n_mcq"] == 3
    # at r = 1 each mcq clip spends one frame at 0.5 (0.4 · 1.25) or at 1, the other three at the floor
    assert rows[1]["retention"] < rows[3]["retention"]
