"""The CAPO loop on a tiny real setup: rendered frames, a small built-in backbone, random coarse features."""

import warnings

import numpy as np
import pytest
import torch

from resadapt.allocator.model import Allocator, AllocatorConfig
from resadapt.backbone.builtin import BuiltinBackbone, BuiltinConfig, BuiltinVideoQA
from resadapt.capo.advantage import CapoCoefficients
from resadapt.capo.measure import measure_allocator
from resadapt.capo.train import CollapseGuard, LoopConfig, train_allocator
from resadapt.data.sample import Video
from resadapt.data.synth import PALETTE, STRIPES, render_frame
from resadapt.features.coarse import Features

T = 4


def make_setup():
    """Six rendered videos and random coarse features (also built by the data-parallel test's ranks)."""
    rng = np.random.default_rng(0)
    videos = []
    for i in range(6):
        colours = [str(c) for c in rng.choice(list(PALETTE), size=T, replace=False)]
        rendered = [render_frame(rng, 112, c, "stripes", 12) for c in colours]
        labels = [{"colour": lab.colour, "glyph": lab.glyph, "box": list(lab.box)} for _, lab in rendered]
        meta = {"question": f"Which stripe orientation is shown in the frame with the {colours[1]} border?",
                "options": list(STRIPES), "answer": chr(65 + STRIPES.index(labels[1]["glyph"])), "task": "mcq",
                "duration": 2.0, "frame_indices": list(range(T)),
                "meta": {"glyph_kind": "stripes", "frames": labels, "target_frame": 1}}
        videos.append(Video(f"v{i}", torch.from_numpy(np.stack([f for f, _ in rendered])), meta))
    g = torch.Generator().manual_seed(0)
    features = Features([v.key for v in videos], torch.randn(6, T, 4, 16, generator=g), torch.ones(6, T, dtype=bool),
                        torch.randn(6, 5, 8, generator=g), torch.ones(6, 5, dtype=bool),
                        torch.randn(6, T, 3, generator=g), torch.randn(6, 3, generator=g))
    return videos, features


@pytest.fixture(scope="module")
def setup():
    return make_setup()


def backbone(cache=True):
    torch.manual_seed(0)
    config = BuiltinConfig(glyph_classes=list(STRIPES), colours=list(PALETTE), vocab=["which", "border"], width=16,
                           stem_channels=8)
    return BuiltinBackbone(BuiltinVideoQA(config).eval(), cache=cache)


CONFIG = AllocatorConfig(patch_dim=16, text_dim=8, width=16, heads=2, depth=1, aligned_dim=3)
LOOP = LoopConfig(steps=6, prompts=3, allocations=4, answers=2, warmup=2, checkpoint_every=2)


def run(setup, tmp_path, loop=LOOP, **kw):
    videos, features = setup
    return train_allocator(loop, CONFIG, CapoCoefficients(), features, videos, kw.pop("bb", None) or backbone(),
                           tmp_path / "ckpt", progress=False, **kw)


def test_a_short_run_updates_the_policy_and_logs_every_metric(setup, tmp_path):
    logged = []
    allocator, history = run(setup, tmp_path, log=lambda step, m: logged.append(step))
    assert logged == list(range(6)) and len(history) == 6
    for key in ("reward", "accuracy", "retention", "proxy_cost", "scale/mean", "scale/min", "scale/max", "scale/std",
                "scale/all_min", "scale/all_max", "kappa/mean", "loss/ppo", "loss/conc", "loss/sim",
                "scale/queried", "scale/others"):
        assert key in history[-1], key
    assert 0 < history[0]["retention"] <= 1.5
    torch.manual_seed(LOOP.seed)  # the loop's own initialisation, rebuilt
    start = Allocator(CONFIG)
    start.init_policy()
    moved = {k for k, v in allocator.state_dict().items() if not torch.allclose(v, start.state_dict()[k])}
    assert {"budget.1.weight", "allocation.3.weight", "proj_patch.weight"} <= moved, moved
    assert allocator.allocation[-1].weight.abs().max() > 0  # the zero-initialised heads learned something
    assert (tmp_path / "ckpt" / "allocator.safetensors").is_file()
    metrics = measure_allocator(allocator, backbone(), setup[1], setup[0])
    assert 0 <= metrics["resadapt/retention"] <= 1.5 and metrics["full/retention"] == 1.0


def test_killed_and_restarted_it_resumes_and_ends_where_an_unbroken_run_ends(setup, tmp_path):
    unbroken, history = run(setup, tmp_path / "a")

    def kill(step):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(setup, tmp_path / "b", on_step=kill)
    seen, logged = [], []
    resumed, history_b = run(setup, tmp_path / "b", on_step=seen.append, log=lambda step, m: logged.append(step))
    assert seen == [2, 3, 4, 5]  # resumed after the checkpoint at step 2
    assert logged == list(range(6))  # the restored steps are logged again, then the new ones
    assert [h["step"] for h in history_b] == list(range(6))
    for key, value in unbroken.state_dict().items():
        assert torch.allclose(value, resumed.state_dict()[key]), key
    other, _ = run(setup, tmp_path / "b", fingerprint="changed params")  # a changed config starts afresh
    assert other is not None


def test_resadapt_rl_updates_the_backbone_too(setup, tmp_path):
    bb = backbone(cache=False)
    before = {k: v.clone() for k, v in bb.model.state_dict().items()}
    loop = LoopConfig(steps=2, prompts=2, allocations=3, answers=2, update_backbone=True, backbone_lr=1e-2)
    _, history = run(setup, tmp_path, loop=loop, bb=bb)
    assert "loss/backbone" in history[-1]
    changed = [k for k, v in bb.model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed


def test_non_finite_inputs_are_errors(setup, tmp_path):
    videos, features = setup
    bad = Features(features.keys, features.patches.clone(), features.frame_mask, features.text, features.text_mask,
                   features.frame_embed, features.query_embed)
    bad.patches[:] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite"):
        train_allocator(LOOP, CONFIG, CapoCoefficients(), bad, videos, backbone(), tmp_path, progress=False)


def test_collapse_guard_warns_once():
    guard = CollapseGuard(0.2, patience=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(5):
            guard.check(step, 0.205, 50.0)
        guard.check(5, 0.5, 199.0)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2 and "pinned at s_min" in messages[0] and "κ reached its cap" in messages[1]
