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
    feats, lengths = m.encode_frames([torch.zeros(h, w, 3, dtype=torch.uint8) for h, w in sizes])
    assert lengths.tolist() == [(h // 28) * (w // 28) for h, w in sizes] == [64, 16, 4, 128, 1]
    assert feats.shape == (213, 64)  # packed: no padding to the longest frame
    with pytest.raises(ValueError, match="frame 1: \\(14, 28\\) is smaller than one 28×28 token cell"):
        m.encode_frames([torch.zeros(28, 28, 3, dtype=torch.uint8), torch.zeros(14, 28, 3, dtype=torch.uint8)])


def reference(m: BuiltinVideoQA, frame: torch.Tensor) -> dict[str, torch.Tensor]:
    """One frame through the stem's convolutions and the heads, every reduction over the frame's own tokens."""
    x = frame.permute(2, 0, 1)[None].to(m.dtype) / 255 - 0.5
    tokens = m.token_norm(m.stem(x).flatten(2).transpose(1, 2))[0]  # [L, width]
    glyph = m.glyph_head(tokens)
    log_g = glyph.log_softmax(-1)
    log_b = (torch.logsumexp(log_g[:, :-1], -1) - log_g[:, -1]).log_softmax(0)
    return {"tokens": tokens, "glyph_logits": glyph, "colour_logits": m.colour_head(tokens.mean(0)),
            "log_class_t": torch.logsumexp(log_b[:, None] + glyph[:, :-1].log_softmax(-1), 0)}


def test_packed_frames_equal_the_per_frame_reference_for_mixed_sizes():
    m = model()
    sizes = [(224, 224), (28, 28), (112, 56), (224, 224), (56, 112), (28, 28), (84, 140), (30, 61)]
    frames = [torch.randint(0, 256, (h, w, 3), dtype=torch.uint8) for h, w in sizes]
    out = m.frame_outputs(frames)
    # a float64 reference: float32 rounding in either path (LayerNorm scales the stem's ~0.03 spread by ~30)
    # would otherwise sit near the tolerance
    m64 = model().double()
    refs = [reference(m64, f) for f in frames]
    lengths = [len(r["tokens"]) for r in refs]
    assert lengths == [64, 1, 8, 64, 8, 1, 15, 2] and out["token_mask"].sum(1).tolist() == lengths
    assert out["tokens"].shape == (sum(lengths), 64) and out["glyph_logits"].shape == (sum(lengths), len(CLASSES) + 1)
    for key in ("tokens", "glyph_logits"):
        torch.testing.assert_close(out[key].double(), torch.cat([r[key] for r in refs]), atol=1e-5, rtol=0)
        padded = out[key].new_zeros(*out["token_mask"].shape, out[key].shape[-1])
        padded[out["token_mask"]] = out[key]
        assert torch.equal(padded[3, :64], out[key][73:137]) and not padded[1, 1:].any()
    for key in ("colour_logits", "log_class_t"):
        torch.testing.assert_close(out[key].double(), torch.stack([r[key] for r in refs]), atol=1e-5, rtol=0)


def test_packed_gradients_equal_the_reference():
    m = model()
    frames = [torch.randint(0, 256, (h, w, 3), dtype=torch.uint8) for h, w in [(56, 84), (224, 224), (28, 28)]]
    weights = torch.randn(3, len(CLASSES)), torch.randn(3, len(PALETTE))

    def loss(out):
        return (out["log_class_t"] * weights[0]).sum() + (out["colour_logits"] * weights[1]).sum()

    packed = torch.autograd.grad(loss(m.frame_outputs(frames)), list(m.parameters()), allow_unused=True)
    refs = [reference(m, f) for f in frames]
    stacked = {k: torch.stack([r[k] for r in refs]) for k in ("log_class_t", "colour_logits")}
    expected = torch.autograd.grad(loss(stacked), list(m.parameters()), allow_unused=True)
    for (name, _), a, b in zip(m.named_parameters(), packed, expected, strict=True):
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4, msg=name)


def test_the_model_processes_exactly_the_planned_tokens():
    """Every token-wise layer sees Σ planned tokens rows, and the multiply-adds follow the token count."""
    from torch.utils.flop_counter import FlopCounterMode

    backbone = BuiltinBackbone(model())
    frames = torch.randint(0, 256, (8, 224, 224, 3), dtype=torch.uint8)
    query = Query("which red", tuple(CLASSES), "mcq", 4.0)
    rows = []
    hooks = [mod.register_forward_hook(lambda _m, args, _o: rows.append(args[0].shape[0]))
             for mod in (backbone.model.token_norm, backbone.model.glyph_head)]

    def cost(scales):
        rows.clear()
        items = [Item(frames, s, query) for s in scales]
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            _, plans = backbone.forward(items)
        assert rows == [sum(p.total_tokens for p in plans)] * 2
        return counter.get_total_flops(), sum(p.total_tokens for p in plans)

    full_flops, full_tokens = cost([[1.0] * 8] * 4)
    for scales in ([[0.5] * 8] * 4, [[1.0] + [0.1] * 7, [0.1] * 7 + [1.0], [0.3] * 8, [1.0, 1.0] + [0.1] * 6]):
        flops, tokens = cost(scales)
        assert abs(flops / full_flops - tokens / full_tokens) < 0.01
    for h in hooks:
        h.remove()


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
