import json

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


def test_hostile_rows_are_per_row_rejects(tmp_path):
    path = tmp_path / "m.jsonl"
    good = [json.dumps(mcq_row(f"g{i}", "v.mp4")).encode() for i in range(3)]
    lines = [
        b"\xef\xbb\xbf" + good[0],  # a byte-order mark before row 1: dropped, the row is kept
        json.dumps(mcq_row("bad-utf8", "v.mp4")).encode().replace(b"digit", b"dig\xffit"),
        json.dumps(mcq_row("many", "v.mp4", options=[str(i) for i in range(27)])).encode(),
        json.dumps(mcq_row("evil", "v.mp4", split="../../../evil")).encode(),
        json.dumps(mcq_row("pct", "v.mp4", split="a%06d")).encode(),
        json.dumps(mcq_row("slash", "v.mp4", split="a/b")).encode(),
        json.dumps(mcq_row("dot", "v.mp4", split="train.x")).encode(),
        json.dumps(mcq_row("../id", "v.mp4")).encode(),
        json.dumps(mcq_row("sp ace", "v.mp4")).encode(),
        json.dumps(mcq_row("nul", "v\u0000.mp4")).encode(),
        good[1],
        json.dumps(mcq_row("ok.with:dots-and_underscores", "v.mp4", split="train-hard")).encode(),
        good[2],
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    rows, rejects = read_manifest(path)
    assert [s.id for _, s in rows] == ["g0", "g1", "ok.with:dots-and_underscores", "g2"]
    by_row = {r["row"]: " ".join(r["reasons"]) for r in rejects}
    assert sorted(by_row) == list(range(2, 11))
    assert "not UTF-8: byte 0xff" in by_row[2]
    assert "27 options, more than the 26 letters" in by_row[3]
    for row in (4, 5, 6, 7):
        assert "split" in by_row[row] and "must be 1-64 ASCII letters" in by_row[row]
    assert "id '../id' must be" in by_row[8] and "id 'sp ace' must be" in by_row[9]
    assert "control character" in by_row[10]
