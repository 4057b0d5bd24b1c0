"""acc of realistic MLLM answers, one row per case, each naming the rule (resadapt/rewards) it checks.

Expected values are worked out by hand from the rules in the method spec §7 (and issue 11's multiple-choice fix),
written next to the row where they are not 0 or 1.
"""

import pytest

from resadapt.rewards import Truth, accuracy, extract_answer

OPTS = ("A man is eating", "A man is cooking", "A woman is dancing", "A dog is running")


def mcq(answer="B", **kw):
    return Truth("mcq", answer, OPTS, **kw)


def grounding(*spans):
    return Truth("grounding", "[3.5, 7.0]", spans=spans or ((3.5, 7.0),))


GQA = Truth("gqa", "A", ("cooking", "eating"), spans=((2.0, 4.0),))

CASES = [
    # ---- multiple choice, single answer: 1 for the right letter, else 0
    ("lone letter", "B", mcq(), 1.0),
    ("lone letter, lower case", "b", mcq(), 1.0),
    ("lone letter in parentheses", "(B)", mcq(), 1.0),
    ("lone letter with a full stop", "B.", mcq(), 1.0),
    ("echo: 'A' of the option text is no second letter (spec's plain Dice: 2/3)", "B. A man is cooking", mcq(), 1.0),
    ("cue 'it is' beats the later letter", "I think it is D, not A.", mcq("D"), 1.0),
    ("extraction cue 'the answer is', then echo", "The answer is B, not A.", mcq(), 1.0),
    ("the last answer cue wins", "The answer is A. Wait, re-checking the frames, the answer is B.", mcq(), 1.0),
    ("<think> ignored, box inside <answer>",
     "<think>A looks wrong since the man holds a pan.</think><answer>\\boxed{B}</answer>", mcq(), 1.0),
    ("letters in <think> do not count", "<think>B seems plausible</think><answer>C</answer>", mcq(), 0.0),
    ("Chinese cue 答案是", "答案是B", mcq(), 1.0),
    ("Chinese cue 答案：, wrong letter", "答案：C", mcq(), 0.0),
    ("code fence stripped", "```\nB\n```", mcq(), 1.0),
    ("option text without its letter", "A man is cooking.", mcq(), 1.0),
    ("hedge between two letters names no answer", "A or B", mcq(), 0.0),
    ("no option letter ('I' is the pronoun)", "I cannot tell from the video.", mcq(), 0.0),
    ("cue 'option is' with a parenthesised letter", "The correct option is (B).", mcq(), 1.0),
    ("last box in free text", "So the final choice is \\boxed{B}.", mcq(), 1.0),
    ("wrong lone letter", "D", mcq(), 0.0),
    ("cue 'Answer:'", "Answer: B", mcq(), 1.0),
    ("ground truth given as <answer> text", "B", mcq("<answer>B</answer>"), 1.0),
    # ---- multiple choice, multi-select: Dice 2|P∩G|/(|P|+|G|)
    ("dice: same set", "A, C", mcq("A, C", multi_select=True), 1.0),
    ("dice: same set, other order, 'and'", "C and A", mcq("A, C", multi_select=True), 1.0),
    ("dice: one of two = 2·1/(1+2)", "A", mcq("A, C", multi_select=True), 2 / 3),
    ("dice: one extra = 2·2/(3+2)", "A, B, C", mcq("A, C", multi_select=True), 0.8),
    ("dice: disjoint", "B, D", mcq("A, C", multi_select=True), 0.0),
    ("dice: several ground-truth letters make it multi-select = 2·2/(3+2)", "A, C, D", mcq("A, C"), 0.8),
    ("dice: boxed set in <answer>", "<answer>\\boxed{A, C}</answer>", mcq("A, C", multi_select=True), 1.0),
    # ---- numerical: |Δ| ≤ max(0.01, 1%·|gt|), else the general matcher
    ("numerical: equal", "12.5", Truth("numerical", "12.5"), 1.0),
    ("numerical: unit stripped", "12.50 meters", Truth("numerical", "12.5"), 1.0),
    ("numerical: 0.1 ≤ 1% of 12.5 = 0.125", "The answer is 12.6", Truth("numerical", "12.5"), 1.0),
    ("numerical: 0.5 > 0.125", "13", Truth("numerical", "12.5"), 0.0),
    ("numerical: thousands separator", "1234", Truth("numerical", "1,234"), 1.0),
    ("numerical: currency and separator", "$3,000", Truth("numerical", "3000"), 1.0),
    ("numerical: the one number in a sentence", "There are 5 people in the video.", Truth("numerical", "5"), 1.0),
    ("numerical: two different numbers are a hedge", "Either 4 or 5", Truth("numerical", "5"), 0.0),
    ("numerical: LaTeX fraction", "\\frac{1}{2}", Truth("numerical", "0.5"), 1.0),
    ("numerical: 0.9 ≤ 1% of 100", "100.9", Truth("numerical", "100"), 1.0),
    ("numerical: 1.5 > 1% of 100", "101.5", Truth("numerical", "100"), 0.0),
    ("numerical: absolute floor 0.01 near 0", "0.005", Truth("numerical", "0"), 1.0),
    ("numerical: reasoning trace", "<think>count: 3 + 4 = 7</think><answer>7</answer>", Truth("numerical", "7"), 1.0),
    # ---- math: numeric closeness, 0 if either side is non-numeric, else the general matcher
    ("math: boxed fraction, nested braces", "\\boxed{\\frac{1}{2}}", Truth("math", "0.5"), 1.0),
    ("math: 2√2 = 2.828, |Δ| 0.0016 ≤ 0.028", "2.83", Truth("math", "2\\sqrt{2}"), 1.0),
    ("math: a non-numeric truth scores 0 (spec §7)", "1+x", Truth("math", "x+1"), 0.0),
    ("math: sqrt(16) = 4", "sqrt(16)", Truth("math", "4"), 1.0),
    ("math: a word is non-numeric", "four", Truth("math", "4"), 0.0),
    # ---- regression: 1 − min(1, |Δ|/|gt|)
    ("regression: 1 − 2/10", "8", Truth("regression", "10"), 0.8),
    ("regression: capped at 0", "25", Truth("regression", "10"), 0.0),
    ("regression: unit stripped", "10.0 seconds", Truth("regression", "10"), 1.0),
    ("regression: the one number, 1 − 1/10", "about 9 seconds", Truth("regression", "10"), 0.9),
    ("regression: zero truth, exact zero", "0", Truth("regression", "0"), 1.0),
    # ---- OCR: 1 − WER
    ("ocr: case and punctuation", "stop.", Truth("ocr", "STOP"), 1.0),
    ("ocr: one substitution of two words", "Hello word", Truth("ocr", "hello world"), 0.5),
    ("ocr: two insertions over three words", "open 24 hours a day", Truth("ocr", "open 24 hours"), 1 - 2 / 3),
    ("ocr: empty answer", "", Truth("ocr", "exit"), 0.0),
    # ---- free-form: mean ROUGE-1/2/L F1 (stemmed); R1 = RL = F(1/4, 1) = 0.4, R2 = 0
    ("free-form: paraphrase of a one-word truth", "The person is cooking.", Truth("free_form", "cooking"), 0.8 / 3),
    # R1 = RL = F(4/5, 4/4) = 8/9, R2 = F(2/4, 2/3) = 4/7 → (16/9 + 4/7) / 3 = 148/189
    ("free-form: stemmed paraphrase", "A man is cooking pasta.", Truth("free_form", "a man cooks pasta"), 148 / 189),
    ("free-form: identical", "the man opens the door", Truth("free_form", "the man opens the door"), 1.0),
    ("free-form: unrelated", "the sky is blue", Truth("free_form", "a dog runs"), 0.0),
    # ---- open (exact match): normalised equality, else the general matcher
    ("open: article and punctuation", "The cat.", Truth("open", "cat"), 1.0),
    ("open: yes/no synonyms", "True", Truth("open", "yes"), 1.0),
    ("open: set in any order", "{3, 2, 1}", Truth("open", "1, 2, 3"), 1.0),
    ("open: a paraphrase is no exact match", "The person is cooking.", Truth("open", "cooking"), 0.0),
    ("open: symbolic (sympy)", "x^2+2x+1", Truth("open", "(x+1)^2"), 1.0),
    # ---- grounding: IoU with the nearest ground-truth span
    ("span: brackets", "[3.5, 7.0]", grounding(), 1.0),
    ("span: 'from … to … seconds'", "from 3.5 to 7 seconds", grounding(), 1.0),
    ("span: 's' units", "[3.5s, 7.0s]", grounding(), 1.0),
    ("span: JSON start/end", '{"start": 3.5, "end": 7}', grounding(), 1.0),
    ("span: JSON in a code fence", '```json\n{"start_time": 3.5, "end_time": 7.0}\n```', grounding(), 1.0),
    ("span: box in <answer> after <think>",
     "<think>The door opens around 4 s</think><answer>\\boxed{[3.5, 7]}</answer>", grounding(), 1.0),
    ("span: parentheses and 'to', IoU 1.5/5", "(2 to 5)", grounding(), 0.3),
    ("span: hyphen, IoU 1.75/3.5", "5.25 - 7", grounding(), 0.5),
    ("span: reversed ends", "[7, 3.5]", grounding(), 1.0),
    ("span: zero-length prediction", "[5, 5]", grounding(), 0.0),
    ("span: m:ss times, IoU 3.5/4", "00:03 - 00:07", grounding(), 0.875),
    ("span: 'between … and … seconds', IoU 1.75/3.5", "between 3.5 and 5.25 seconds", grounding(), 0.5),
    ("span: no span", "The door opens near the end.", grounding(), 0.0),
    ("span: several truths, max IoU = 1/1.5", "[5, 6.5]", grounding((1.0, 2.0), (5.0, 6.0)), 2 / 3),
    ("span: the last span of the answer", "The first attempt is [0, 1], but the door opens at [3.5, 7.0].",
     grounding(), 1.0),
    ("span: 'starts at … ends at'", "It starts at 3.5 s and ends at 7 s", grounding(), 1.0),
    # ---- grounded QA: answer match + IoU (0–2)
    ("gqa: right answer, exact span", "A <> [2, 4]", GQA, 2.0),
    ("gqa: wrong answer, exact span", "B <> [2, 4]", GQA, 1.0),
    ("gqa: right answer, IoU 1/2", "A <> [3, 4]", GQA, 1.5),
    ("gqa: boxed", "\\boxed{A <> [2.0, 4.0]}", GQA, 2.0),
    ("gqa: no options, text answer, IoU 1/2", "Cooking <> [2, 3]", Truth("gqa", "cooking", spans=((2.0, 4.0),)), 1.5),
    ("gqa: no '<>': the letter counts, no span", "A", GQA, 1.0),
]


def test_the_table_is_big_enough():
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("rule,response,truth,expected", CASES, ids=[c[0] for c in CASES])
def test_accuracy(rule, response, truth, expected):
    assert accuracy(response, truth) == pytest.approx(expected, abs=1e-6)


def _wrapped(truth: Truth) -> Truth:
    """The same truth as a reasoning model would write it: <think>, then the answer boxed inside <answer>."""
    return Truth(truth.task, f"<think>worked out</think><answer>\\boxed{{{truth.answer}}}</answer>", truth.options,
                 truth.multi_select, truth.spans)


@pytest.mark.parametrize("rule,response,truth,expected", CASES, ids=[c[0] for c in CASES])
def test_ground_truth_is_extracted_like_the_prediction(rule, response, truth, expected):
    assert accuracy(response, _wrapped(truth)) == pytest.approx(expected, abs=1e-6)


def test_grounding_truth_from_its_text_when_no_span_is_given():
    text_only = Truth("grounding", "<answer>```json\n[[1, 2], [5, 6]]\n```</answer>")
    assert accuracy("[5, 6.5]", text_only) == pytest.approx(2 / 3)


@pytest.mark.parametrize("text,answer", [
    ("<think>x</think> <answer> \\boxed{\\frac{1}{\\sqrt{2}}} </answer>", "\\frac{1}{\\sqrt{2}}"),
    ("Reasoning...\nFinal answer: 42", "42"),
    ("line one\n\nline two\n", "line two"),
    ("<answer>The person is cooking.</answer>", "The person is cooking."),
    ("The answer is \\boxed{7} but the box wins over later text", "7"),
    ("\\boxed{unclosed", "\\boxed{unclosed"),
    ("", ""),
])
def test_extract_answer(text, answer):
    assert extract_answer(text) == answer


def test_unknown_task_is_an_error():
    with pytest.raises(ValueError, match="unknown task 'essay'"):
        accuracy("x", Truth("essay", "x"))
