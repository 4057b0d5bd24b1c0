import pytest

from resadapt.backbone.answers import accuracy, format_span, iou, parse_letter, parse_span


@pytest.mark.parametrize("text,span", [
    ("[1.5, 2.0]", (1.5, 2.0)), ("It is (3 to 4) seconds", (3.0, 4.0)), ("[2 - 1]", (1.0, 2.0)),
    ("first [0, 1] then [4.5, 5]", (4.5, 5.0)), ("no span", None),
])
def test_parse_span(text, span):
    assert parse_span(text) == span


def test_iou():
    assert iou((0, 1), (0, 1)) == 1.0
    assert iou((0, 1), (0.5, 1.5)) == pytest.approx(1 / 3)
    assert iou((2, 2), (1, 3)) == 0.0 and iou((0, 1), (2, 3)) == 0.0


def test_letters_and_accuracy():
    letters = ["A", "B", "C", "D"]
    assert parse_letter("B", letters) == "B" and parse_letter("The answer is (C).", letters) == "C"
    assert parse_letter("none", letters) is None
    assert parse_letter("The answer is B, a vertical stripe.", letters) == "B" and parse_letter("(c)", letters) == "C"
    assert accuracy("B.", "mcq", "B", None, letters) == 1.0 and accuracy("A", "mcq", "B", None, letters) == 0.0
    assert accuracy(format_span(1, 2), "grounding", "[1, 2]", (1.0, 2.0), []) == 1.0
    assert accuracy("cat", "open", " Cat ", None, []) == 1.0
