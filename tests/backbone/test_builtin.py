import math

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
    config = BuiltinConfig(**({"glyph_classes": CLASSES, "colours": list(PALETTE), "vocab": ["which", "red", "border"]}
                              | over))
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


def constructed(vocab: list[str]) -> BuiltinVideoQA:
    """A model whose query heads are set by hand: each word a one-hot embedding; a colour word names its colour, the
    words "which", "same" and "many" give the kind, a stripe word the class a count counts."""
    m = model(vocab=vocab)
    colours, kinds = list(PALETTE), {"which": 0, "same": 1, "many": 2}
    with torch.no_grad():
        for layer in (m.query_colour, m.query_kind, m.query_class):
            layer.weight.zero_()
            layer.bias.zero_()
        m.query_colour.bias.fill_(-10.0)
        m.word_embedding.weight.zero_()
        for i, w in enumerate(vocab, start=1):
            m.word_embedding.weight[i, i] = 1.0
            if w in colours:
                m.query_colour.weight[colours.index(w), i] = 20.0
            if w in kinds:
                m.query_kind.weight[kinds[w], i] = 20.0
            if w in CLASSES:
                m.query_class.weight[CLASSES.index(w), i] = 20.0
    return m


def reads(frames: list[tuple[str, str | None]]) -> tuple[torch.Tensor, torch.Tensor]:
    """colour_logits [1, T, C] and log_class_t [1, T, K] of frames (colour, class read; None: illegible)."""
    colour = torch.full((1, len(frames), len(PALETTE)), -20.0)
    read = torch.full((1, len(frames), len(CLASSES)), math.log(1e-4))
    for t, (c, k) in enumerate(frames):
        colour[0, t, list(PALETTE).index(c)] = 20.0
        read[0, t] = read[0, t] if k is not None else 0.0
        if k is not None:
            read[0, t, CLASSES.index(k)] = 0.0
    return colour, read.log_softmax(-1)


def answer_of(m: BuiltinVideoQA, frames, question: str, options: list[str]) -> str:
    colour, read = reads(frames)
    out = m.answer(colour, read, [question])
    return options[int(m.option_logprobs(out, [options])[0].argmax())]


def test_the_readout_combines_the_frames_a_question_names():
    m = constructed(["which", "same", "many", "red", "blue", "green", "vertical", "horizontal"])
    video = [("red", "vertical"), ("cyan", "horizontal"), ("blue", "vertical"), ("green", "horizontal")]
    same, count = ["yes", "no"], ["0", "1", "2", "3"]
    assert answer_of(m, video, "which red", CLASSES) == "vertical"
    assert answer_of(m, video, "which green", CLASSES) == "horizontal"
    assert answer_of(m, video, "same red blue", same) == "yes"
    assert answer_of(m, video, "same red green", same) == "no"
    assert answer_of(m, video, "many red blue green vertical", count) == "2"
    assert answer_of(m, video, "many red blue green horizontal", count) == "1"
    # an illegible frame is "cannot tell": same → P(yes) = 1/4, a count is spread over both outcomes
    blind = [("red", "vertical"), ("cyan", "horizontal"), ("blue", None), ("green", "horizontal")]
    colour, read = reads(blind)
    out = m.answer(colour, read, ["same red blue"])
    assert out["log_same"][0, 0].exp().item() == pytest.approx(0.25, abs=1e-3)
    out = m.answer(colour, read, ["many red blue green vertical"])
    assert out["log_count"][0, 1:3].exp().tolist() == pytest.approx([0.75, 0.25], abs=1e-3)
    # the same colour sampled twice, once sharp and once illegible: the sharp read decides
    held = [("red", None), ("red", "horizontal"), ("blue", "vertical")]
    assert answer_of(m, held, "which red", CLASSES) == "horizontal"
    assert answer_of(m, held, "same red blue", same) == "no"


def test_grounding_answers_span_the_named_frames():
    m = constructed(["when", "red", "blue"])
    backbone = BuiltinBackbone(m)
    colours = ["cyan", "red", "red", "lime", "blue", "navy"]
    colour, read = reads([(c, None) for c in colours])
    for question, expected in [("when red", (0.5, 1.5)), ("when red blue", (0.5, 2.5)), ("when blue", (2.0, 2.5))]:
        out = m.answer(colour, read, [question])
        item = Item(torch.zeros(6, 28, 28, 3, dtype=torch.uint8), [1.0] * 6, Query(question, (), "grounding", 3.0))
        (logp, texts, spans), = backbone._choices(out, [item])
        assert len(spans) == 21 and spans[int(logp.argmax())] == expected
        assert logp.exp().sum().item() == pytest.approx(1.0, abs=1e-5)


def _videos(n: int) -> list[Video]:
    """Tiny rendered-in-memory graded videos with the generator's labels (no files needed for the training loop)."""
    from resadapt.data.synth import ask, draw_needs, render_frame

    rng = np.random.default_rng(0)
    videos = []
    for i in range(n):
        colours = [str(c) for c in rng.choice(list(PALETTE), size=4, replace=False)]
        needs = draw_needs(rng, 4, 0.5, 1.0, 0.25)
        rendered = [render_frame(rng, 112, c, "stripes", 8, need) for c, need in zip(colours, needs, strict=True)]
        frames = torch.from_numpy(np.stack([f for f, _ in rendered]))
        labels = [lab.meta() for _, lab in rendered]
        q = ask(rng, labels, ("which", "same", "count", "between")[i % 4], "stripes", 2.0)
        meta = {"question": q.question, "options": q.options, "answer": q.answer, "duration": 2.0,
                "task": "grounding" if q.span else "mcq", "span": q.span, "frame_indices": [0, 1, 2, 3],
                "meta": {"glyph_kind": "stripes", "frames": labels, "target_frame": q.needed[0],
                         "needed_frames": q.needed, "question_kind": q.kind}}
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
    first, last = ({k: np.mean([r[k] for r in part]) for k in log[0]} for part in (log[:5], log[-5:]))
    assert last["loss"] < 0.9 * first["loss"]
    assert last["kind"] < 0.5 * first["kind"] and last["counted"] < 0.9 * first["counted"]  # the question is read
    assert last["colour"] < 0.8 * first["colour"] and last["tokens"] < 0.9 * first["tokens"]  # and the frames
    result = evaluate(BuiltinBackbone(trained), videos, "full", batch_size=4)
    assert result["n_mcq"] == 9 and result["n_grounding"] == 3 and result["retention"] == 1.0
    assert 0.0 <= result["accuracy"] <= 1.0 and {"which/score", "same/score", "count/score"} <= result.keys()
