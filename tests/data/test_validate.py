import json

import pytest

from resadapt.config import ValidateParams
from resadapt.data.validate import TooManyRejects, validate_manifest
from tests.conftest import counting_clip, mcq_row, write_manifest


@pytest.fixture
def messy(tmp_path):
    """A manifest with good rows and one row for every kind of bad input."""
    root = tmp_path / "in"
    good = [counting_clip(root / "videos" / f"good{i}.mp4", 12) for i in range(4)]
    odd = counting_clip(root / "videos" / "odd name 'q' \"dq\" ü漢.mp4", 12)
    (root / "videos" / "empty.mp4").write_bytes(b"")
    data = good[0].read_bytes()
    (root / "videos" / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (root / "videos" / "text.mp4").write_text("not a video")
    counting_clip(root / "videos" / "short.mp4", 4)
    no_answer = mcq_row("no-answer", "videos/good1.mp4")
    del no_answer["answer"]
    rows = [
        mcq_row("g0", "videos/good0.mp4"),
        mcq_row("g1", "videos/good1.mp4", split="eval"),
        {"id": "g2", "video": "videos/good2.mp4", "question": "When?", "answer": "[0.1, 0.5]", "task": "grounding",
         "span": [0.1, 0.5], "split": "train"},
        mcq_row("g3", f"videos/{odd.name}"),
        mcq_row("g4", "videos/good3.mp4", task="open", options=[], answer="anything"),
        mcq_row("empty", "videos/empty.mp4"),
        mcq_row("truncated", "videos/truncated.mp4"),
        mcq_row("text", "videos/text.mp4"),
        mcq_row("missing", "videos/missing.mp4"),
        mcq_row("short", "videos/short.mp4"),
        no_answer,
        mcq_row("bad-answer", "videos/good1.mp4", answer="E"),
        mcq_row("g0", "videos/good2.mp4"),
        mcq_row("blank", "videos/good2.mp4", question="   "),
        {"id": "late", "video": "videos/good2.mp4", "question": "When?", "answer": "[1, 9]", "task": "grounding",
         "span": [1, 9], "split": "train"},
    ]
    return write_manifest(root / "manifest.jsonl", rows)


def run(manifest, tmp_path, **over):
    params = ValidateParams(out_dir=str(tmp_path / "out"), **over)
    return validate_manifest(manifest, params, min_frames=8, n_workers=2, progress=False), tmp_path / "out"


def test_every_bad_row_is_rejected_with_its_reason_and_no_good_row_is_lost(messy, tmp_path):
    summary, out = run(messy, tmp_path, max_reject_fraction=0.8)
    accepted = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["id"] for r in accepted] == ["g0", "g1", "g2", "g3", "g4"]
    for row in accepted:  # paths now relative to the new manifest and still pointing at the videos
        assert (out / row["video"]).is_file()
    rejects = {r["row"]: r for r in map(json.loads, (out / "rejects.jsonl").read_text().splitlines())}
    expected = {
        6: "empty file", 7: "truncated.mp4", 8: "not a readable video", 9: "file not found",
        10: "only 4 frame(s) decode, fewer than the 8", 11: "answer: Field required",
        12: "answer 'E' is not among the option letters A, B, C, D", 13: "duplicate id 'g0' (first at row 1)",
        14: "empty question", 15: "span [1.0, 9.0] is not inside",
    }
    assert sorted(rejects) == sorted(expected)
    for row, text in expected.items():
        assert any(text in reason for reason in rejects[row]["reasons"]), (row, rejects[row]["reasons"])
    assert summary["accepted"] == 5 and summary["rejected"] == 10
    report = (out / "report.md").read_text()
    assert "accepted: 5, rejected: 10" in report and "duplicate id 'g0'" in report


def test_too_many_rejects_fails_keeps_the_previous_outputs_and_reports_in_failed(messy, tmp_path):
    root = messy.parent
    clean = write_manifest(root / "clean.jsonl", [mcq_row("g0", "videos/good0.mp4")])
    run(clean, tmp_path)  # an earlier good run
    out = tmp_path / "out"
    before = {name: (out / name).read_bytes() for name in ("manifest.jsonl", "rejects.jsonl", "summary.json",
                                                           "report.md")}
    with pytest.raises(TooManyRejects, match=r"rejected 10 of 15 rows .*validate.max_reject_fraction.*failed"):
        run(messy, tmp_path)
    assert {name: (out / name).read_bytes() for name in before} == before
    assert "accepted: 5, rejected: 10" in (out / "failed" / "report.md").read_text()
    assert len((out / "failed" / "rejects.jsonl").read_text().splitlines()) == 10
    assert sorted(p.name for p in out.iterdir()) == sorted([*before, "failed"])  # no temp folder left
    run(clean, tmp_path)  # a later good run clears the failed one
    assert not (out / "failed").exists()


def test_a_manifest_without_rows_fails_and_keeps_the_previous_outputs(tmp_path):
    root = tmp_path / "in"
    counting_clip(root / "a.mp4", 10)
    run(write_manifest(root / "m.jsonl", [mcq_row("a", "a.mp4")]), tmp_path)
    previous = (tmp_path / "out" / "manifest.jsonl").read_text()
    with pytest.raises(TooManyRejects, match="no rows"):
        run(write_manifest(root / "empty.jsonl", []), tmp_path)
    assert (tmp_path / "out" / "manifest.jsonl").read_text() == previous


def test_clean_manifest_passes(tmp_path):
    root = tmp_path / "in"
    counting_clip(root / "a.mp4", 10)
    manifest = write_manifest(root / "m.jsonl", [mcq_row("a", "a.mp4"), mcq_row("b", "a.mp4")])
    summary, out = run(manifest, tmp_path)
    assert summary["rejected"] == 0 and summary["reject_fraction"] == 0.0
    assert json.loads((out / "summary.json").read_text())["checks"][0]["success"] is True
