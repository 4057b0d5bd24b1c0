"""Multiple choice: which option letter(s) an answer names, and its score (method spec §7, with the fix of issue 11).

A single-answer item scores 1 for the right letter and 0 otherwise; Dice over letter sets is for multi-select items
only (spec §7's plain Dice would give "B. A man is cooking" 2/3 against B, counting the article "A" as a letter).
"""

from __future__ import annotations

import re

from resadapt.rewards.text import normalise_text

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LETTER = r"(?<![A-Za-z])\(?\s*([A-Z])\s*\)?(?![A-Za-z'’])"
_LONE = re.compile(r"[\s(\[{]*([A-Za-z])[\s)\]}.:]*")
_CUE = re.compile(r"(?<![A-Za-z])(?:answer\s*(?:is|:|：)?|option|choice|it\s+is|it's|is|答案\s*(?:是|为|[:：])?|选)"
                  r"\s*[:：]?\s*" + _LETTER, re.IGNORECASE)
_ECHO = re.compile(r"\s*[(\[]?([A-Z])(?:[)\]]|[.:,])(?:\s|$)")
# "A" and "I" followed by a lower-case word are the English words ("A man", "I think"), not options
_WORD_NOT_LETTER = re.compile(r"\s+(?!(?:and|or|nor)\b)[a-z]")


def option_letters(n_options: int) -> str:
    """The letters of an item's options (A, B, …); every letter when the options are not listed."""
    return LETTERS[:n_options] if n_options else LETTERS


def lone_letter(text: str, letters: str) -> str | None:
    """Rule "lone letter": the answer is nothing but a letter, any case, maybe wrapped: "b", "(B)", "B.", "[C]"."""
    m = _LONE.fullmatch(text)
    return m.group(1).upper() if m and m.group(1).upper() in letters else None


def cue_letter(text: str, letters: str) -> str | None:
    """Rule "cue": the capital letter right after the last answer cue ("the answer is", "answer:", "option",
    "it is", "答案是", a box already unwrapped): "I think it is D, not A." → D."""
    found = [m.group(1) for m in _CUE.finditer(text) if m.group(1) in letters]
    return found[-1] if found else None


def echoed_letter(text: str, letters: str) -> str | None:
    """Rule "echo": the answer opens with a capital letter and a separator, then echoes the option's text:
    "B. A man is cooking" → B (the article "A" that follows is not a second letter)."""
    m = _ECHO.match(text)
    return m.group(1) if m and m.group(1) in letters else None


def option_text_letter(text: str, options: tuple[str, ...]) -> str | None:
    """Rule "option text": the answer is one option's text without its letter ("vertical" → that option's letter)."""
    said = normalise_text(text)
    hits = [LETTERS[i] for i, o in enumerate(options) if said and normalise_text(o) == said]
    return hits[0] if len(hits) == 1 else None


def standalone_letters(text: str, letters: str) -> list[str]:
    """Every option letter standing alone in the text, in order, except "A"/"I" used as English words."""
    out = []
    for m in re.finditer(_LETTER, text):
        letter = m.group(1)
        if letter in "AI" and _WORD_NOT_LETTER.match(text, m.end()):
            continue
        if letter in letters:
            out.append(letter)
    return out


def only_letter(text: str, letters: str) -> str | None:
    """Rule "only letter": the one distinct option letter the answer mentions; None for none or several (a hedge
    such as "A or B" names no answer)."""
    found = set(standalone_letters(text, letters))
    return found.pop() if len(found) == 1 else None


def chosen_letter(text: str, letters: str, options: tuple[str, ...] = ()) -> str | None:
    """A single-answer item's choice: rules lone letter, cue, echo, option text, only letter, the first that
    finds one."""
    for rule in (lone_letter, cue_letter, echoed_letter):
        found = rule(text, letters)
        if found:
            return found
    return option_text_letter(text, options) or only_letter(text, letters)


def chosen_letters(text: str, letters: str) -> set[str]:
    """A multi-select answer's letter set: a lone letter, or every standalone option letter ("A, C", "A and C")."""
    lone = lone_letter(text, letters)
    return {lone} if lone else set(standalone_letters(text, letters))


def dice(pred: set[str], gt: set[str]) -> float:
    """Rule "dice" (multi-select): 2|P ∩ G| / (|P| + |G|); 0 when either set is empty."""
    return 2 * len(pred & gt) / (len(pred) + len(gt)) if pred and gt else 0.0


def is_multi_select(flag: bool, gt: str, letters: str) -> bool:
    """Multi-select when the item says so, or when its ground truth names several letters."""
    return flag or len(chosen_letters(gt, letters)) > 1


def choice_score(pred: str, gt: str, n_options: int, options: tuple[str, ...] = (),
                 multi_select: bool = False) -> float:
    """acc of a multiple-choice answer. The ground truth goes through the same letter rules; one without any letter is
    compared as text (normalised equality)."""
    letters = option_letters(n_options)
    if is_multi_select(multi_select, gt, letters):
        truth = chosen_letters(gt, letters)
        if truth:
            return dice(chosen_letters(pred, letters), truth)
        return float(normalise_text(pred) == normalise_text(gt) != "")
    truth_letter = chosen_letter(gt, letters, options)
    if truth_letter is None:
        return float(normalise_text(pred) == normalise_text(gt) != "")
    return float(chosen_letter(pred, letters, options) == truth_letter)
