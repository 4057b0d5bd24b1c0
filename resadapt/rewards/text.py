"""Text answers: normalisation, OCR (1 − WER) and free-form (mean ROUGE-1/2/L F1) scores (method spec §7)."""

from __future__ import annotations

import re
import string
from functools import lru_cache

_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
# punctuation goes, except a "." or "," between digits ("3.5" stays one number)
_OTHER_PUNCT = re.escape(string.punctuation.replace(".", "").replace(",", ""))
_PUNCT = re.compile(rf"(?<!\d)[.,]|[.,](?!\d)|[{_OTHER_PUNCT}]")


def normalise_text(text: str) -> str:
    """Lower case, punctuation and the articles a/an/the dropped, whitespace collapsed: "The Cat." → "cat"."""
    text = _PUNCT.sub(" ", text.lower())
    return " ".join(_ARTICLES.sub(" ", text).split())


def ocr_words(text: str) -> list[str]:
    """Lower-case words with the punctuation at their ends stripped ("STOP." → "stop", "$3.50" → "3.50")."""
    words = (w.strip(string.punctuation) for w in text.lower().split())
    return [w for w in words if w]


def ocr_score(pred: str, gt: str) -> float:
    """OCR: 1 − WER(gt, pred) over ``ocr_words``, floored at 0 (WER counts substitutions, deletions and insertions
    per ground-truth word). An empty ground truth scores 1 for an empty answer, else 0."""
    import jiwer

    ref, hyp = ocr_words(gt), ocr_words(pred)
    if not ref:
        return float(not hyp)
    if not hyp:
        return 0.0
    return max(0.0, 1.0 - jiwer.wer(" ".join(ref), " ".join(hyp)))


@lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def rouge_score(pred: str, gt: str) -> float:
    """Free-form: (F1 of ROUGE-1 + ROUGE-2 + ROUGE-L) / 3, Porter-stemmed words ("cooking" = "cooks" = "cook");
    an n-gram order the ground truth is too short for (ROUGE-2 of one word) counts 0."""
    scores = _rouge().score(gt, pred)
    return sum(scores[k].fmeasure for k in ("rouge1", "rouge2", "rougeL")) / 3
