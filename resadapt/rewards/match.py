"""The general matcher (method spec §7: text / number / set / symbolic), which several problem types fall back on."""

from __future__ import annotations

import re

from resadapt.rewards.numbers import numbers_equal, parse_number
from resadapt.rewards.symbolic import symbolic_equal
from resadapt.rewards.text import normalise_text

_BRACKETS = {"{": "}", "[": "]", "(": ")"}
_SEPARATOR = re.compile(r"\s*[,;]\s*")
_YES, _NO = {"yes", "true", "correct", "yeah", "yep"}, {"no", "false", "incorrect", "wrong", "nope"}


def text_equal(pred: str, gt: str) -> bool:
    """Rule "text": the same after ``normalise_text`` (case, punctuation, articles, spacing)."""
    return normalise_text(pred) == normalise_text(gt) != ""


def number_equal(pred: str, gt: str) -> bool:
    """Rule "number": both are the same number, however written ("1,000" = "1000.0", "$3,000" = "3000")."""
    return numbers_equal(parse_number(pred), parse_number(gt))


def set_items(text: str) -> list[str] | None:
    """The items of a list answer ("1, 2, 3", "{a; b}", "[x, y]"), or None for fewer than two items."""
    text = text.strip().rstrip(".")
    if text[:1] in _BRACKETS and text.endswith(_BRACKETS[text[0]]):
        text = text[1:-1]
    items = [t for t in _SEPARATOR.split(text) if t]
    return items if len(items) >= 2 else None


def set_equal(pred: str, gt: str) -> bool:
    """Rule "set": two lists with the same items in any order, items matched by text or number ("2, 1" = "{1,2}")."""
    p, g = set_items(pred), set_items(gt)
    if p is None or g is None or len(p) != len(g):
        return False
    left = list(g)
    for item in p:
        hit = next((x for x in left if text_equal(item, x) or number_equal(item, x)), None)
        if hit is None:
            return False
        left.remove(hit)
    return True


def yes_no_equal(pred: str, gt: str) -> bool:
    """Rule "yes/no": both say yes ("yes", "true", "correct", …) or both say no ("no", "false", "wrong", …)."""
    p, g = normalise_text(pred), normalise_text(gt)
    return (p in _YES and g in _YES) or (p in _NO and g in _NO)


def general_match(pred: str, gt: str) -> float:
    """1 when any of the rules text, number, set, yes/no or symbolic (sympy: "(x+1)^2" = "x^2+2x+1",
    "\\frac{1}{2}" = "0.5") says the answers are the same, else 0."""
    rules = (text_equal, number_equal, set_equal, yes_no_equal, symbolic_equal)
    return float(any(rule(pred, gt) for rule in rules))

