"""Time spans in answers ("[3.5, 7.0]", "(3.5 to 7)", "3.5s - 7s", "from 0:03 to 0:07", {"start": 3.5, "end": 7})
and their temporal IoU (method spec §7, grounding)."""

from __future__ import annotations

import json
import re

Span = tuple[float, float]

_TIME = r"(?:\d+:){0,2}\d+(?:\.\d+)?"  # seconds, or m:ss / h:mm:ss
_UNIT = r"(?:\s*(?:s|secs?|seconds?)\b)?"
_SEP = r"\s*(?:,|-|–|—|~|\bto\b|\band\b|\btill\b|\buntil\b)\s*"
_PAIR = re.compile(
    rf"\[\s*(?P<a1>{_TIME}){_UNIT}{_SEP}(?P<b1>{_TIME}){_UNIT}\s*\]"
    rf"|\(\s*(?P<a2>{_TIME}){_UNIT}{_SEP}(?P<b2>{_TIME}){_UNIT}\s*\)"
    rf"|(?<![\d.:])(?P<a3>{_TIME}){_UNIT}{_SEP}(?P<b3>{_TIME}){_UNIT}(?![\d.:])", re.IGNORECASE)
_KEYS = (("start", "end"), ("start_time", "end_time"), ("begin", "finish"), ("begin", "end"))
_KEYED = re.compile(rf"\b(?P<key>start(?:_time)?|begin|starts\s+at|end(?:_time)?|finish|ends\s+at)\W{{0,3}}\s*"
                    rf"(?P<t>{_TIME}){_UNIT}", re.IGNORECASE)


def format_span(start: float, end: float) -> str:
    """A span as the built-in backbone writes it: ``[start, end]`` rounded to 0.01 s."""
    return json.dumps([round(start, 2), round(end, 2)])


def seconds(text: str) -> float:
    """"7", "7.5" or "1:05" / "0:01:05" → seconds."""
    value = 0.0
    for part in text.split(":"):
        value = value * 60 + float(part)
    return value


def _ordered(a: float, b: float) -> Span:
    return (a, b) if a <= b else (b, a)


def json_spans(data) -> list[Span]:
    """Spans in parsed JSON: ``[s, e]``, a list of those, ``{"start": s, "end": e}`` (or start_time/end_time,
    begin/finish), ``{"segment": …}`` / ``{"timestamps": …}``, or a list of such objects."""
    if isinstance(data, dict):
        for key in ("segment", "segments", "timestamps", "timestamp", "span", "spans"):
            if key in data:
                return json_spans(data[key])
        for a, b in _KEYS:
            if isinstance(data.get(a), int | float) and isinstance(data.get(b), int | float):
                return [_ordered(float(data[a]), float(data[b]))]
        return []
    if isinstance(data, list | tuple):
        if len(data) == 2 and all(isinstance(x, int | float) and not isinstance(x, bool) for x in data):
            return [_ordered(float(data[0]), float(data[1]))]
        return [s for item in data for s in json_spans(item)]
    return []


def _json_in(text: str) -> list[Span]:
    """Rule "JSON": the whole text is JSON holding spans, or its outermost ``{…}`` is (a list in prose is left to
    rule "pair", which finds every span in it)."""
    i, j = text.find("{"), text.rfind("}")
    for candidate in (text.strip(), text[i : j + 1] if 0 <= i < j else ""):
        try:
            found = json_spans(json.loads(candidate))
        except ValueError:
            continue
        if found:
            return found
    return []


def _keyed(text: str) -> list[Span]:
    """Rule "keys": "start: 3.5, end: 7" or "starts at 3.5 s and ends at 7 s"."""
    starts = [seconds(m.group("t")) for m in _KEYED.finditer(text) if m.group("key").lower()[0] in "bs"]
    ends = [seconds(m.group("t")) for m in _KEYED.finditer(text) if m.group("key").lower()[0] in "ef"]
    return [_ordered(starts[-1], ends[-1])] if starts and ends else []


def _pairs(text: str) -> list[Span]:
    """Rule "pair": two times in brackets or parentheses, or bare, joined by "," "-" "to" "and" "until", each with
    an optional "s"/"sec"/"seconds" unit: "[3.5s, 7.0s]", "(3 to 4)", "from 3.5 to 7 seconds", "0:03 - 0:07"."""
    out = []
    for m in _PAIR.finditer(text):
        a = m.group("a1") or m.group("a2") or m.group("a3")
        b = m.group("b1") or m.group("b2") or m.group("b3")
        out.append(_ordered(seconds(a), seconds(b)))
    return out


def parse_spans(text: str) -> list[Span]:
    """Every span in the text, by the first of the rules JSON, keys, pair that finds any."""
    for rule in (_json_in, _keyed, _pairs):
        found = rule(text)
        if found:
            return found
    return []


def parse_span(text: str) -> Span | None:
    """The answer's span: the last one in it (a model that corrects itself says the final span last)."""
    found = parse_spans(text)
    return found[-1] if found else None


def iou(a: Span, b: Span) -> float:
    """Temporal IoU |a ∩ b| / |a ∪ b| of two spans; a zero-length prediction ``a`` scores 0."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 and a[1] > a[0] else 0.0


def best_iou(pred: Span | None, truths: list[Span]) -> float:
    """Grounding acc: the IoU with the nearest of the ground-truth spans (max over them); 0 without a prediction."""
    return max((iou(pred, t) for t in truths), default=0.0) if pred else 0.0
