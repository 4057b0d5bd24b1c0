from resadapt.data.manifest import read_manifest
from tests.conftest import mcq_row, write_manifest


def test_schema_rejects_keep_row_numbers_and_good_rows(tmp_path):
    no_answer = mcq_row("b", "v.mp4")
    del no_answer["answer"]
    path = write_manifest(tmp_path / "m.jsonl", [
        mcq_row("a", "v.mp4"),
        no_answer,
        "{broken json",
        {"id": "c", "video": "v.mp4", "question": "When?", "answer": "[0, 1]", "task": "grounding", "split": "x"},
        mcq_row("d", "v.mp4", task="caption"),
        mcq_row("e", "v.mp4", extra_field=1),
        "[1, 2]",
        mcq_row("f", "v.mp4"),
    ])
    rows, rejects = read_manifest(path)
    assert [s.id for _, s in rows] == ["a", "f"]
    assert [r for r, _ in rows] == [1, 8]
    by_row = {r["row"]: r for r in rejects}
    assert sorted(by_row) == [2, 3, 4, 5, 6, 7]
    assert by_row[2]["id"] == "b" and "answer: Field required" in by_row[2]["reasons"]
    assert "not JSON" in by_row[3]["reasons"][0]
    assert "span" in by_row[4]["reasons"][0]
    assert "task" in by_row[5]["reasons"][0]
    assert "extra_field" in by_row[6]["reasons"][0]
    assert "JSON object" in by_row[7]["reasons"][0]
