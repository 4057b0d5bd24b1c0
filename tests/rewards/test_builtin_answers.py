"""The built-in backbone's one-token answers score exactly as before the rewards package (its pipeline's numbers
must not change), and the prompt's style or the clip length in it do not change what it answers."""

import json

import pytest
import torch

from resadapt.backbone.builtin import BuiltinBackbone, BuiltinConfig, BuiltinVideoQA
from resadapt.backbone.interface import Item, Query
from resadapt.data.sample import Video
from resadapt.data.synth import PALETTE, STRIPES


def _old_iou(a, b):
    """The pre-rewards rule: temporal IoU, 0 for a zero-length prediction."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 and a[1] > a[0] else 0.0


@pytest.fixture(scope="module")
def rollouts():
    torch.manual_seed(0)
    model = BuiltinVideoQA(BuiltinConfig(glyph_classes=list(STRIPES), colours=list(PALETTE),
                                         vocab=["which", "red", "when", "border"])).eval()
    backbone = BuiltinBackbone(model)
    frames = torch.randint(0, 256, (8, 112, 112, 3), dtype=torch.uint8)
    items = [Item(frames, [1.0] * 8, Query("which red border", tuple(STRIPES), "mcq", 4.0)),
             Item(frames, [0.5] * 8, Query("when red border", (), "grounding", 4.0))]
    return backbone, items, backbone.generate(items, n=64, temperature=3.0)


def test_mcq_letters_score_as_exact_letter_match(rollouts):
    _, _, out = rollouts
    answers = out.answers[0]
    assert set(answers) == set("ABCD")  # a hot sampler reaches every option
    for truth in "ABCD":
        video = Video("k", torch.zeros(1), {"task": "mcq", "answer": truth, "options": list(STRIPES)})
        assert [video.score(a) for a in answers] == [float(a == truth) for a in answers]


def test_grounding_spans_score_as_iou(rollouts):
    _, _, out = rollouts
    answers = out.answers[1]
    assert len(set(answers)) >= 4 and all(a == json.dumps(json.loads(a)) for a in answers)  # "[0.5, 1.0]"
    for span in [(0.5, 1.0), (0.0, 2.25), (3.5, 4.0), (1.0, 1.5)]:
        video = Video("k", torch.zeros(1), {"task": "grounding", "answer": json.dumps(span), "span": list(span)})
        assert [video.score(a) for a in answers] == pytest.approx([_old_iou(json.loads(a), span) for a in answers])


def test_prompt_style_and_duration_do_not_change_the_builtin_answers(rollouts):
    backbone, items, _ = rollouts
    # the grounding prompt now states the clip's length, and reasoning adds a long instruction: the built-in model
    # reads the question's words only
    variants = [Item(it.frames, it.scales, Query(it.query.question, it.query.options, it.query.task, 4.0, style))
                for it in items for style in ("plain", "reasoning")]
    assert variants[0].query.prompt() != variants[1].query.prompt()
    out = backbone.generate(variants, greedy=True)
    assert out.answers[0] == out.answers[1] and out.answers[2] == out.answers[3]
    assert torch.equal(out.logprobs[0], out.logprobs[1]) and torch.equal(out.logprobs[2], out.logprobs[3])
