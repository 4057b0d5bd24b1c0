"""Answers as text, and how right they are: mcq letters, grounding spans ([start, end] seconds, IoU)."""

from __future__ import annotations

import json
import re

_NUMBER = r"-?\d+(?:\.\d+)?"
_SPAN = re.compile(rf"[\[(]\s*({_NUMBER})\s*(?:,|-|to|and)\s*({_NUMBER})\s*[\])]")


def format_span(start: float, end: float) -> str:
    return json.dumps([round(start, 2), round(end, 2)])


def parse_span(text: str) -> tuple[float, float] | None:
    """The last ``[start, end]`` in ``text`` (brackets or parentheses; ',', '-', 'to', 'and' between)."""
    found = _SPAN.findall(text)
    if not found:
        return None
    start, end = map(float, found[-1])
    return (start, end) if end >= start else (end, start)


def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Temporal IoU of two spans; a zero-length prediction scores 0."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 and a[1] > a[0] else 0.0


def parse_letter(text: str, letters: list[str]) -> str | None:
    """The option letter an answer names: 'b', 'B.', '(B)', 'The answer is B' …

    A lone answer may be lower case; inside a sentence only capitals count (the article "a" is no option), and the
    last one wins.
    """
    text = text.strip()
    if text.rstrip(".)").lstrip("(").upper() in letters:
        return text.rstrip(".)").lstrip("(").upper()
    found = re.findall(rf"\b([{''.join(letters)}])\b", text)
    return found[-1] if found else None


def accuracy(answer: str, task: str, truth: str, span: tuple[float, float] | None, letters: list[str]) -> float:
    """acc in [0, 1]: exact letter for mcq, IoU for grounding, normalised string match for open questions."""
    if task == "mcq":
        return float(parse_letter(answer, letters) == truth.strip().upper())
    if task == "grounding":
        predicted = parse_span(answer)
        return iou(predicted, span) if predicted and span else 0.0
    return float(" ".join(answer.lower().split()) == " ".join(truth.lower().split()))
