"""Numbers in answers: "1,234.5", "$3,000", "12.5 meters", "50%", "3/4", "1.2e-3", "x = 5", "\\frac{1}{2}"."""

from __future__ import annotations

import math
import re

from resadapt.rewards.symbolic import numeric_value

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_CURRENCY = re.compile(r"^[-+]?\s*[$€£¥]\s*")
_VARIABLE = re.compile(r"^[A-Za-z]\w*\s*=\s*")
# a number, then at most a unit: letters, °, %, "/", "²", "^2" (12.5 meters, 65°, 3 m/s², 34 GB)
_WITH_UNIT = re.compile(rf"({_NUM})\s*(?:[A-Za-z°%µ²³/]+(?:\^?\d)?)*\.?")
_FRACTION = re.compile(r"([-+]?\d+)\s*/\s*(\d+)")
_ANY_NUMBER = re.compile(rf"(?<![\w.]){_NUM}")


def _clean(text: str) -> str:
    """Strip the surroundings of a number: whitespace, a trailing full stop, a currency sign, "x =", thousands
    separators ("1,234" → "1234"; "1,2" is a list and stays)."""
    text = _VARIABLE.sub("", text.strip().rstrip("."))
    negative = text.startswith("-") and bool(_CURRENCY.match(text))
    text = ("-" if negative else "") + _CURRENCY.sub("", text)
    return _THOUSANDS.sub("", text).strip()


def parse_number(text: str) -> float | None:
    """The number a whole answer is, or None: a plain, scientific or thousands-separated number with at most a
    currency sign before and a unit after it ("%" is a unit: "50%" is 50), a fraction "3/4", or an expression with
    no variables ("\\frac{1}{2}", "2\\sqrt{2}", "3 \\times 10^4")."""
    text = _clean(text)
    if not text:
        return None
    m = _WITH_UNIT.fullmatch(text)
    if m:
        return float(m.group(1))
    m = _FRACTION.fullmatch(text)
    if m:
        return float(m.group(1)) / float(m.group(2)) if float(m.group(2)) else None
    return numeric_value(text)


def stated_number(text: str) -> float | None:
    """The number an answer states: the whole answer as a number (``parse_number``), else the one distinct number
    written in it ("There are 3 people." → 3); None when it names several different numbers (a hedge) or none."""
    whole = parse_number(text)
    if whole is not None:
        return whole
    found = {float(x) for x in _ANY_NUMBER.findall(_THOUSANDS.sub("", text))}
    return found.pop() if len(found) == 1 else None


def numeric_close(pred: float | None, gt: float | None) -> bool:
    """The numerical tolerance of spec §7: |pred − gt| ≤ max(0.01, 0.01·|gt|); False when either is missing."""
    return pred is not None and gt is not None and abs(pred - gt) <= max(0.01, 0.01 * abs(gt))


def numbers_equal(a: float | None, b: float | None) -> bool:
    """The same number however written ("3.50" = "3.5", "1,000" = "1000"): equal to a relative 1e-9."""
    return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
