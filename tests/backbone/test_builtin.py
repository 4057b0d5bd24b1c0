import numpy as np
import pytest
import torch

from resadapt.backbone.builtin import BuiltinBackbone, BuiltinConfig, BuiltinVideoQA
from resadapt.backbone.builtin_train import Video, build_config, evaluate, train
from resadapt.backbone.interface import Item, Query
from resadapt.data.synth import PALETTE, STRIPES

CLASSES = list(STRIPES)


def model(**over):
    torch.manual_seed(0)
    config = BuiltinConfig(glyph_classes=CLASSES, colours=list(PALETTE), vocab=["which", "red", "border"], **over)
    return BuiltinVideoQA(config).eval()


def test_tokens_grow_with_pixel_area_like_the_qwen_grid():
    m = model()
    sizes = [(224, 224), (112, 112), (56, 56), (448, 224), (28, 28)]
    feats, mask = m.encode_frames([torch.zeros(h, w, 3, dtype=torch.uint8) for h, w in sizes])
    assert mask.sum(1).tolist() == [(h // 28) * (w // 28) for h, w in sizes] == [64, 16, 4, 128, 1]
    assert feats.shape == (5, 128, 64)


def test_save_and_load_round_trip(tmp_path):
    m = model()
    m.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "config.json").is_file()
    loaded = BuiltinBackbone.from_pretrained(str(tmp_path))
    frames = torch.randint(0, 256, (4, 224, 224, 3), dtype=torch.uint8)
    items = [Item(frames, [1.0, 0.5, 0.2, 1.0], Query("which red border", tuple(CLASSES), "mcq", 2.0))]
    a, b = BuiltinBackbone(m).answer_logprobs(items, [["A", "C"]]), loaded.answer_logprobs(items, [["A", "C"]])
    assert torch.allclose(a, b)


def test_rollouts_tokens_and_log_probs_agree():
    backbone = BuiltinBackbone(model())
    frames = torch.randint(0, 256, (6, 224, 224, 3), dtype=torch.uint8)
    items = [Item(frames, [1.0, 0.2, 0.2, 0.5, 0.2, 0.2], Query("which red", tuple(CLASSES), "mcq", 3.0)),
             Item(frames, [0.2] * 6, Query("when red", (), "grounding", 3.0))]
    rollouts = backbone.generate(items, n=5)
    assert rollouts.tokens == [64 + 16 + 4 * 4, 6 * 4]
    assert rollouts.retention == pytest.approx([96 / 384, 24 / 384])
    assert all(a in "ABCD" for a in rollouts.answers[0])
    assert all(a.startswith("[") for a in rollouts.answers[1])
    scored = backbone.answer_logprobs(items, rollouts.answers)
    assert torch.allclose(scored, rollouts.logprobs, atol=1e-5)
    assert backbone.generate(items, greedy=True).answers == backbone.generate(items, greedy=True).answers


def _videos(n: int) -> list[Video]:
    """Tiny rendered-in-memory videos with the generator's labels (no files needed for the training loop)."""
    from resadapt.data.synth import render_frame

    rng = np.random.default_rng(0)
    videos = []
    for _ in range(n):
        colours = [str(c) for c in rng.choice(list(PALETTE), size=4, replace=False)]
        rendered = [render_frame(rng, 112, c, "stripes", 12) for c in colours]
        frames = torch.from_numpy(np.stack([f for f, _ in rendered]))
        labels = [{"colour": lab.colour, "glyph": lab.glyph, "box": list(lab.box)} for _, lab in rendered]
        meta = {"question": f"Which stripe orientation is shown in the frame with the {colours[0]} border?",
                "options": list(STRIPES), "answer": chr(65 + STRIPES.index(labels[0]["glyph"])), "task": "mcq",
                "duration": 2.0, "frame_indices": [0, 1, 2, 3],
                "meta": {"glyph_kind": "stripes", "frames": labels, "target_frame": 0}}
        videos.append(Video(frames, meta))
    return videos


@pytest.mark.slow
def test_training_moves_every_parameter_and_lowers_the_loss():
    videos = _videos(12)
    config = build_config(videos, width=32, stem_channels=16)
    assert config.glyph_classes == CLASSES and "stripe" in config.vocab
    before = {k: v.clone() for k, v in BuiltinVideoQA(config).state_dict().items()}
    trained, log = train(videos, steps=40, batch_size=6, lr=3e-3, warmup=5, width=32, stem_channels=16, seed=0,
                         progress=False)
    after = trained.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) == len(before)
    first, last = np.mean([r["loss"] for r in log[:5]]), np.mean([r["loss"] for r in log[-5:]])
    assert last < 0.7 * first
    result = evaluate(BuiltinBackbone(trained), videos, "full", batch_size=4)
    assert result["n_mcq"] == 12 and 0.0 <= result["accuracy"] <= 1.0 and result["retention"] == 1.0
