"""The report's per-question-kind view of the sweep."""

from resadapt.evaluate.report import by_kind, kind_markdown


def rows() -> list[dict]:
    scores = {"a": 1.0, "b": 0.0, "c": 1.0, "d": 1.0}
    return [{"method": "full", "budget": 1.0, "scores": {"mcq": dict.fromkeys(scores, 1.0), "grounding": {"g": 1.0}}},
            {"method": "resadapt", "budget": 0.15, "scores": {"mcq": scores, "grounding": {"g": 0.5}}},
            {"method": "resadapt_policy", "budget": None, "scores": {"mcq": {"a": 0.0}, "grounding": {}}}]


def test_mcq_accuracy_is_split_by_the_generators_question_kind():
    kinds = by_kind(rows(), {"a": "which", "b": "count", "c": "count", "d": None, "g": "when"})
    assert kinds["resadapt"]["r015"] == {"count": {"accuracy": 0.5, "n": 2}, "which": {"accuracy": 1.0, "n": 1}}
    assert kinds["full"]["r100"]["count"] == {"accuracy": 1.0, "n": 2}
    assert kinds["resadapt_policy"]["policy"]["which"] == {"accuracy": 0.0, "n": 1}
    table = kind_markdown(kinds, 0.15)
    assert table[3] == "| method | count (n) | which (n) |"
    assert "| ResAdapt | 50.0 (2) | 100.0 (1) |" in table and "| Full | 100.0 (2) | 100.0 (1) |" in table
    assert "| ResAdapt (policy) |  | 0.0 (1) |" in table


def test_videos_without_labels_give_no_kind_section():
    assert by_kind(rows(), {}) == {} and kind_markdown({}, 0.15) == []
