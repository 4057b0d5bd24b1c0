"""acc by problem type, the format reward, the DAPO overlong penalty and the backbone's score (method spec §7).

    backbone score = w_acc · acc + w_fmt · fmt + overlong(L)        (reference: w_acc = 1, w_fmt = 0.2)
    Allocator reward = acc                                          (spec §7: CAPO uses acc only)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

from resadapt.rewards.choice import choice_score, chosen_letter, option_letters
from resadapt.rewards.extract import after_think, answer_tag, extract_answer, last_boxed, strip_code_fences
from resadapt.rewards.match import general_match
from resadapt.rewards.numbers import numeric_close, parse_number, stated_number
from resadapt.rewards.spans import Span, best_iou, parse_span, parse_spans
from resadapt.rewards.text import ocr_score, rouge_score

Task = Literal["mcq", "grounding", "open", "numerical", "math", "ocr", "free_form", "regression", "gqa"]
TASKS: tuple[str, ...] = get_args(Task)
SPAN_TASKS = ("grounding", "gqa")

_TAG_FREE = r"(?:(?!</?think>|</?answer>).)*"
_FORMAT = re.compile(rf"\s*<think>{_TAG_FREE}</think>\s*<answer>{_TAG_FREE}</answer>\s*", re.DOTALL)


@dataclass(frozen=True)
class Truth:
    """What scoring needs to know about a sample: its task, answer text, options, spans."""

    task: str
    answer: str
    options: tuple[str, ...] = ()
    multi_select: bool = False
    spans: tuple[Span, ...] = ()  # grounding / gqa: every ground-truth span (empty: parsed from the answer)

    @classmethod
    def from_meta(cls, meta: dict) -> Truth:
        """From a manifest row or a shard sample's JSON (``span`` and/or ``spans``)."""
        spans = [tuple(s) for s in meta.get("spans") or []] or ([tuple(meta["span"])] if meta.get("span") else [])
        return cls(meta["task"], str(meta["answer"]), tuple(meta.get("options") or ()),
                   bool(meta.get("multi_select", False)), tuple((float(a), float(b)) for a, b in spans))


def extract_span_answer(text: str) -> str:
    """Grounding and grounded-QA extraction (spec §7): after the last ``</think>``, fences stripped, the
    ``<answer>`` content, then its last box; without a box the whole remaining text (a span may sit on any line)."""
    text = strip_code_fences(after_think(text))
    text = answer_tag(text) or text
    boxed = last_boxed(text)
    return (boxed if boxed is not None else text).strip()


def _split_gqa(text: str) -> tuple[str, str]:
    """"answer <> [s, e]" → (answer, span text); without "<>" both parts are the whole text."""
    if "<>" not in text:
        return text, text
    answer, span = text.rsplit("<>", 1)
    return answer.strip(), span


def numerical_score(pred: str, gt: str) -> float:
    """Numerical: 1 when the stated numbers are within max(0.01, 1%·|gt|), else the general matcher."""
    return 1.0 if numeric_close(stated_number(pred), stated_number(gt)) else general_match(pred, gt)


def math_score(pred: str, gt: str) -> float:
    """Math: 0 unless both answers are numbers (``parse_number``); 1 within the numerical tolerance; else the
    general matcher (spec §7)."""
    p, g = parse_number(pred), parse_number(gt)
    if p is None or g is None:
        return 0.0
    return 1.0 if numeric_close(p, g) else general_match(pred, gt)


def regression_score(pred: str, gt: str) -> float:
    """Regression: 1 − min(1, |pred − gt| / |gt|); a zero truth scores 1 only for exactly 0; no number scores 0."""
    p, g = stated_number(pred), stated_number(gt)
    if p is None or g is None:
        return 0.0
    if g == 0:
        return float(p == 0)
    return 1.0 - min(1.0, abs(p - g) / abs(g))


def truth_spans(truth: Truth) -> list[Span]:
    """The ground-truth spans: the sample's own, else every span in its (extracted) answer text."""
    return list(truth.spans) or parse_spans(_split_gqa(extract_span_answer(truth.answer))[1])


def grounding_score(response: str, truth: Truth) -> float:
    """Grounding: the IoU of the answer's span with the nearest ground-truth span (0 without a span)."""
    return best_iou(parse_span(extract_span_answer(response)), truth_spans(truth))


def gqa_score(response: str, truth: Truth) -> float:
    """Grounded QA, "answer <> [s, e]": answer match (the option letter with options, else the general matcher)
    plus the span's IoU, so 0–2."""
    pred_answer, pred_span = _split_gqa(extract_span_answer(response))
    gt_answer = _split_gqa(extract_answer(truth.answer))[0]
    if truth.options:
        letters = option_letters(len(truth.options))
        gt_letter = chosen_letter(gt_answer, letters, truth.options)
        match = float(gt_letter is not None and chosen_letter(pred_answer, letters, truth.options) == gt_letter)
    else:
        match = general_match(pred_answer, gt_answer)
    return match + best_iou(parse_span(pred_span), truth_spans(truth))


def accuracy(response: str, truth: Truth) -> float:
    """acc of a whole response (spec §7): extract the final answer, the truth the same way, and score by task."""
    if truth.task == "grounding":
        return grounding_score(response, truth)
    if truth.task == "gqa":
        return gqa_score(response, truth)
    pred, gt = extract_answer(response), extract_answer(truth.answer)
    if truth.task == "mcq":
        return choice_score(pred, gt, len(truth.options), truth.options, truth.multi_select)
    rules = {"numerical": numerical_score, "math": math_score, "regression": regression_score,
             "ocr": ocr_score, "free_form": rouge_score, "open": general_match}
    if truth.task not in rules:
        raise ValueError(f"unknown task {truth.task!r}; one of {', '.join(TASKS)}")
    return rules[truth.task](pred, gt)


def format_reward(response: str) -> float:
    """fmt: −1 when ``<think>``/``</think>`` or ``<answer>``/``</answer>`` counts differ; 1 when the whole response
    is ``<think>…</think><answer>…</answer>`` (whitespace around the blocks, no tags inside them); else 0."""
    if response.count("<think>") != response.count("</think>") or \
            response.count("<answer>") != response.count("</answer>"):
        return -1.0
    return 1.0 if _FORMAT.fullmatch(response) else 0.0


def overlong_penalty(n_tokens: int, max_tokens: int, buffer: int, factor: float) -> float:
    """DAPO soft overlong penalty: with expected = max_tokens − buffer, min(0, −(L − expected) / buffer) · factor —
    0 up to ``expected`` tokens, falling linearly to −factor at ``max_tokens``."""
    expected = max_tokens - buffer
    return min(0.0, -(n_tokens - expected) / buffer) * factor


def backbone_score(response: str, acc: float, n_tokens: int, accuracy_weight: float, format_weight: float,
                   max_tokens: int, buffer: int, factor: float) -> float:
    """The backbone's reward: accuracy_weight · acc + format_weight · fmt + overlong penalty."""
    return (accuracy_weight * acc + format_weight * format_reward(response)
            + overlong_penalty(n_tokens, max_tokens, buffer, factor))

