"""The sweep end to end on a tiny real setup: rendered frames, a small built-in backbone, a fresh Allocator."""

import numpy as np
import pytest
import torch

from resadapt.allocator.model import Allocator, AllocatorConfig
from resadapt.backbone.builtin import BuiltinBackbone, BuiltinConfig, BuiltinVideoQA
from resadapt.data.sample import Video
from resadapt.data.synth import PALETTE, STRIPES, render_frame
from resadapt.evaluate.report import checks, markdown, metrics_json, paired, pareto_rows
from resadapt.evaluate.sweep import EvalSet, sweep
from resadapt.evaluate.taskres import calibrate
from resadapt.features.coarse import Features

T = 4


def clips(n: int, hold: int) -> list[Video]:
    rng = np.random.default_rng(0)
    videos = []
    for i in range(n):
        colours = [str(c) for c in rng.choice(list(PALETTE), size=T, replace=False)]
        rendered = [render_frame(rng, 112, c, "stripes", 12) for c in colours]
        labels = [{"colour": lab.colour, "glyph": lab.glyph, "box": list(lab.box)} for _, lab in rendered]
        task = "grounding" if i % 3 == 2 else "mcq"
        meta = {"question": f"Which stripe orientation is shown in the frame with the {colours[1]} border?",
                "options": list(STRIPES) if task == "mcq" else [], "task": task, "duration": 2.0,
                "answer": chr(65 + STRIPES.index(labels[1]["glyph"])) if task == "mcq" else "[0.50, 1.00]",
                "span": None if task == "mcq" else [0.5, 1.0], "frame_indices": list(range(0, T * hold)),
                "meta": {"glyph_kind": "stripes", "frames": [lab for lab in labels for _ in range(hold)],
                         "target_frame": hold + hold // 2}}
        frames = torch.from_numpy(np.stack([f for f, _ in rendered for _ in range(hold)]))
        videos.append(Video(f"v{i}", frames, meta))
    return videos


def features(videos: list[Video]) -> Features:
    g = torch.Generator().manual_seed(0)
    n, t = len(videos), len(videos[0].frames)
    return Features([v.key for v in videos], torch.randn(n, t, 4, 16, generator=g), torch.ones(n, t, dtype=bool),
                    torch.randn(n, 5, 8, generator=g), torch.ones(n, 5, dtype=bool), torch.randn(n, t, 3, generator=g),
                    torch.randn(n, 3, generator=g))


@pytest.fixture(scope="module")
def result():
    torch.manual_seed(0)
    config = BuiltinConfig(glyph_classes=list(STRIPES), colours=list(PALETTE), vocab=["which", "border"], width=16,
                           stem_channels=8)
    backbone = BuiltinBackbone(BuiltinVideoQA(config).eval())
    allocator = Allocator(AllocatorConfig(patch_dim=16, text_dim=8, width=16, heads=2, depth=1, aligned_dim=3,
                                          s_min=0.1)).eval()
    one, two = clips(6, 1), clips(6, 2)
    sets = {1: EvalSet(one, features(one)), 2: EvalSet(two, features(two))}
    taskres = calibrate(backbone, one, scales=(0.25, 1.0), n=4)
    methods = ["full", "fixed_scale", "random_drop", "taskres", "relevance_topk", "relevance_topk_drop", "resadapt",
               "resadapt_policy", "resadapt_split", "resadapt_x2", "relevance_topk_drop_x2"]
    return sweep(backbone, allocator, sets, [0.25, 0.5, 1.0], methods, taskres, progress=False)


def row(rows, method, budget):
    return next(r for r in rows if r["method"] == method and r["budget"] == budget)


def test_every_method_reports_what_it_spent(result):
    assert len(result) == 2 + 9 * 3  # full and the policy once, the rest at each budget
    assert row(result, "full", 1.0)["retention"] == 1.0
    for r in (0.25, 0.5, 1.0):
        assert row(result, "random_drop", r)["retention"] == max(1, round(r * T)) / T
        assert row(result, "resadapt", r)["retention"] <= r + 1e-9
        assert row(result, "resadapt_x2", r)["retention"] <= r + 1e-9  # against the 1x clip's tokens
        assert row(result, "resadapt_split", r)["retention"] <= r + 1e-9  # on average (equal clips here)
        assert row(result, "relevance_topk", r)["retention"] <= r + 1e-9  # floored frames' tokens count
        assert row(result, "relevance_topk_drop", r)["retention"] <= r + 1e-9
        assert row(result, "relevance_topk_drop_x2", r)["retention"] <= r + 1e-9  # 8 frames on the 4-frame budget
        fixed = row(result, "fixed_scale", r)
        assert abs(fixed["retention"] - r) <= 0.07 and fixed["tokens"] == fixed["retention"] * 64
    for p in result:
        assert p["n_mcq"] == 4 and p["n_grounding"] == 2
        assert 0 <= p["accuracy"] <= 1 and 0 <= p["miou"] <= 1
        assert p["r@0.3"] >= p["r@0.5"] >= p["r@0.7"]
        assert len(p["scores"]["mcq"]) == 4 and p["accuracy"] == sum(p["scores"]["mcq"].values()) / 4
        assert p["miou"] == pytest.approx(sum(p["scores"]["grounding"].values()) / 2)
    # 64 tokens per 4-frame clip, so at r = 1 top-k keeps every frame at scale 1: Full's answers, sample by sample
    assert row(result, "relevance_topk", 1.0)["scores"] == row(result, "full", 1.0)["scores"]


def test_outputs_hold_every_row_and_the_checks(result):
    check = checks(result, 0.25, min_margin=0.3)
    assert {"resadapt_minus_fixed", "beats_fixed", "resadapt_minus_full", "x2_minus_x1"} <= set(check)
    comparisons = paired(result, 0.25)
    assert {"resadapt_vs_relevance_topk", "resadapt_vs_relevance_topk_drop", "resadapt_vs_fixed_scale",
            "resadapt_x2_vs_resadapt", "resadapt_x2_vs_relevance_topk_drop_x2", "resadapt_split_vs_relevance_topk",
            "resadapt_split_vs_relevance_topk_drop", "resadapt_split_vs_resadapt"} == set(comparisons)
    assert all(set(c) == {"r025", "r050", "r100", "summary"} for c in comparisons.values())
    metrics = metrics_json(result, check, comparisons)
    assert metrics["fixed_scale"]["r025"]["retention"] == pytest.approx(row(result, "fixed_scale", 0.25)["retention"],
                                                                        abs=1e-5)
    assert "policy" in metrics["resadapt_policy"]
    assert len(pareto_rows(result)) == len(result)
    text = markdown(result, check, [0.25, 0.5, 1.0], comparisons=comparisons)
    assert "| ResAdapt 2x frames |" in text and "beats_fixed" in text and "| Relevance top-k (drop) |" in text
    assert "| ResAdapt vs Relevance top-k (floor) | 0.25 |" in text


def test_a_trained_allocator_through_the_budget_operator_beats_fixed_scale_where_one_frame_matters(tmp_path):
    """The bandit's stand-in answers only when the needed frame gets scale ≥ 0.7: at r = 0.15 FixedScale gives every
    frame √0.15 ≈ 0.39 and fails, the Allocator trained by the CAPO loop spends the budget on the needed frame."""
    import warnings

    from resadapt.capo.bandit import BanditSpec, from_train_params, run_bandit
    from resadapt.config import TrainParams

    torch.set_num_threads(1)
    spec = BanditSpec(mode="where", similarity=True, heldout_prompts=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _, allocator, heldout, backbone = run_bandit(spec, *from_train_params(TrainParams(), spec), [150], tmp_path)
    rows = sweep(backbone, allocator, {1: EvalSet(heldout.videos, heldout.features)}, [0.15],
                 ["fixed_scale", "resadapt"], None, progress=False)
    fixed, ours = row(rows, "fixed_scale", 0.15), row(rows, "resadapt", 0.15)
    assert ours["retention"] <= 0.15 + 1e-9 and fixed["retention"] <= 0.15 + 1e-9
    assert fixed["accuracy"] == 0.0 and ours["accuracy"] >= 0.95


def test_the_ablation_allocator_is_swept_blind_to_the_similarity_signal():
    torch.manual_seed(0)
    config = BuiltinConfig(glyph_classes=list(STRIPES), colours=list(PALETTE), vocab=["which", "border"], width=16,
                           stem_channels=8)
    backbone = BuiltinBackbone(BuiltinVideoQA(config).eval())
    make = {dim: Allocator(AllocatorConfig(patch_dim=16, text_dim=8, width=16, heads=2, aligned_dim=dim, s_min=0.1))
            for dim in (3, 0)}
    for allocator in make.values():  # a trained policy, not the flat start: the match signal reaches the output
        torch.nn.init.normal_(allocator.allocation[-1].weight, std=1.0)
        allocator.eval()
    videos = clips(3, 1)
    base = features(videos)
    swapped = Features(base.keys, base.patches, base.frame_mask, base.text, base.text_mask, -base.frame_embed,
                       base.query_embed)
    ins = [list(range(len(videos)))]
    with torch.no_grad():
        for dim, allocator in make.items():
            a, b = (allocator(*f.select(*ins))["mean"] for f in (base, swapped))
            assert torch.equal(a, b) == (dim == 0)  # only the ablation ignores frame_embed / query_embed
    sets = {1: EvalSet(videos, base)}
    rows = sweep(backbone, make[3], sets, [0.25, 1.0], ["resadapt", "resadapt_nosim"], None, progress=False,
                 nosim=make[0])
    assert [(r["method"], r["budget"]) for r in rows] == [("resadapt", 0.25), ("resadapt", 1.0),
                                                         ("resadapt_nosim", 0.25), ("resadapt_nosim", 1.0)]
    assert row(rows, "resadapt_nosim", 0.25)["retention"] <= 0.25 + 1e-9
    assert "ResAdapt without the similarity signal" in markdown(rows, {}, [0.25, 1.0])
    with pytest.raises(ValueError, match="resadapt_nosim needs the ablation Allocator"):
        sweep(backbone, make[3], sets, [0.25], ["resadapt_nosim"], None, progress=False)
