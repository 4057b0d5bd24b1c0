import pytest

from resadapt.backbone.interface import REASONING, Query


def test_plain_prompts_name_the_answer_form():
    assert Query("Which stripe?", ("horizontal", "vertical"), "mcq", 8.0).prompt() == (
        "Which stripe?\nA. horizontal\nB. vertical\nAnswer with the option's letter.")
    assert Query("When is the red frame?", (), "grounding", 8.0).prompt() == (
        "When is the red frame?\nThe video is 8.0 seconds long.\nAnswer with [start, end] in seconds.")
    assert Query("How many cups?", (), "numerical").prompt().endswith("Answer with a number.")


def test_reasoning_prompt_asks_for_think_answer_and_box():
    text = Query("When?", (), "grounding", 12.0, "reasoning").prompt()
    lines = text.split("\n")
    assert lines[:2] == ["When?", "The video is 12.0 seconds long."]
    assert lines[2] == f"{REASONING} The final answer is [start, end] in seconds."
    assert all(tag in text for tag in ("<think>", "</think>", "<answer>", "</answer>", "\\boxed{}"))


@pytest.mark.parametrize("meta,last", [
    ({"answer": "A, C", "multi_select": None}, "Answer with the letters of all correct options, separated by commas."),
    ({"answer": "B", "multi_select": True}, "Answer with the letters of all correct options, separated by commas."),
    ({"answer": "B"}, "Answer with the option's letter."),
])
def test_multi_select_items_ask_for_every_letter(meta, last):
    q = Query.from_meta({"question": "Which?", "options": ["x", "y", "z"], "task": "mcq", **meta})
    assert q.prompt().split("\n")[-1] == last


def test_from_meta_carries_the_style():
    meta = {"question": "Where?", "options": [], "task": "gqa", "answer": "kitchen", "duration": 3.0}
    q = Query.from_meta(meta, "reasoning")
    assert q.style == "reasoning" and "The video is 3.0 seconds long." in q.prompt()
    assert "a short answer, then \" <> \"" in q.prompt()
