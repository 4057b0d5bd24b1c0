"""From a model's whole response (or a ground-truth text) to its final answer (method spec §7, "Extraction").

``extract_answer`` applies the rules below in order; each is one function. The ground truth goes through the same
function, so ``"<answer>B</answer>"`` and ``"B"`` are the same truth.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"```[^\n`]*\n?(.*?)```", re.DOTALL)
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
# "final answer", "the answer is", "Answer:", "答案" (an answer cue), then the answer up to the end of its line
_CUE = re.compile(r"(?:final\s+answer\s*(?:is)?|(?<![A-Za-z])answer\s*(?:is|:|：)|最终答案|答案\s*(?:是|为)?)"
                  r"\s*[:：]?\s*(?P<rest>[^\n]*)", re.IGNORECASE)


def after_think(text: str) -> str:
    """Rule 1: only the text after the last ``</think>`` counts (the reasoning is not the answer)."""
    return text.rsplit("</think>", 1)[-1] if "</think>" in text else text


def strip_code_fences(text: str) -> str:
    """Rule 2: a fenced block (```json … ```) stands for its content; the fence and its language tag go."""
    return _FENCE.sub(lambda m: m.group(1), text)


def answer_tag(text: str) -> str | None:
    """Rule 3: the content of the last complete ``<answer>…</answer>``, or None without one."""
    found = _ANSWER_TAG.findall(text)
    return found[-1].strip() if found else None


def last_boxed(text: str) -> str | None:
    r"""Rule 4: the content of the last ``\boxed{…}`` (or ``\fbox{…}``), braces matched so ``\boxed{\frac{1}{2}}``
    gives ``\frac{1}{2}``; None without a complete box."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    open_at = text.find("{", start)
    if open_at < 0 or text[start:open_at].strip() not in ("\\boxed", "\\fbox"):
        return None
    depth = 0
    for i in range(open_at, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[open_at + 1 : i].strip()
    return None


def answer_cue(text: str) -> str | None:
    """Rule 5: what follows the last answer cue ("final answer", "the answer is", "Answer:", "答案") on its line,
    or None without a cue (or with nothing after it)."""
    found = [m.group("rest").strip() for m in _CUE.finditer(text)]
    found = [f for f in found if f]
    return found[-1] if found else None


def last_line(text: str) -> str:
    """Rule 6: the last non-empty line ("" for an empty text)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def extract_answer(text: str) -> str:
    """The final answer: after the last ``</think>``, fences stripped; inside an ``<answer>`` tag its box or else its
    whole content; without a tag the last box, else the text after the last answer cue, else the last line."""
    text = strip_code_fences(after_think(text))
    tagged = answer_tag(text)
    if tagged is not None:
        boxed = last_boxed(tagged)
        return boxed if boxed is not None else tagged
    for rule in (last_boxed, answer_cue):
        found = rule(text)
        if found is not None:
            return found
    return last_line(text)
