import pytest

from resadapt.rewards.spans import best_iou, format_span, iou, parse_span, parse_spans


@pytest.mark.parametrize("text,spans", [
    ("[[1, 2], [5, 6]]", [(1.0, 2.0), (5.0, 6.0)]),
    ('[{"start": 1, "end": 2}, {"start": 4, "end": 3}]', [(1.0, 2.0), (3.0, 4.0)]),
    ('{"segment": [0.5, 1.5]}', [(0.5, 1.5)]),
    ("start: 3.5, end: 7", [(3.5, 7.0)]),
    ("1:05 to 1:10", [(65.0, 70.0)]),
    ("[1.5, 2.0] and later (3 - 4)", [(1.5, 2.0), (3.0, 4.0)]),
    ("no times here", []),
])
def test_parse_spans(text, spans):
    assert parse_spans(text) == spans


def test_the_builtin_format_round_trips():
    assert format_span(1.234, 2.0) == "[1.23, 2.0]" and parse_span(format_span(1.234, 2.0)) == (1.23, 2.0)


def test_iou_and_best_iou():
    assert iou((0, 1), (0.5, 1.5)) == pytest.approx(1 / 3)
    assert iou((2, 2), (1, 3)) == 0.0 and iou((0, 1), (2, 3)) == 0.0
    assert best_iou((5, 6), [(0, 1), (5, 7)]) == pytest.approx(0.5) and best_iou(None, [(0, 1)]) == 0.0
