"""``resadapt import``: the reference's verl parquet and Video-R1 JSONL → a manifest that passes ``validate``."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from resadapt.cli import main
from resadapt.config import ValidateParams
from resadapt.data.importer import import_manifest, option_texts, task_of
from resadapt.data.validate import validate_manifest
from tests.conftest import counting_clip

INSTRUCTION = " You FIRST think about the reasoning process ... within <answer> </answer> tags."


def verl_row(index, video, problem_type, truth, question, options=None, **extra):
    return {
        "data_source": "LLaVA-Video-178K",
        "prompt": [{"role": "user", "content": f"<video>{question}{INSTRUCTION}"}],
        "images": [],
        "videos": [{"type": "video", "video": str(video), "min_frames": 1, "max_frames": 32}],
        "ability": "video_reasoning",
        "reward_model": {"style": "rule", "ground_truth": truth},
        "extra_info": {"split": "train", "index": index, "answer": truth, "question": f"<video>{question}",
                       "doc_id": f"doc{index}", "video_path": str(video), "problem_type": problem_type,
                       "options": options or [], **extra},
    }


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "data"
    videos = [counting_clip(root / "videos" / f"v{i}.mp4", 20) for i in range(3)]  # 2.0 s each
    return root, videos


def _validate(manifest, tmp_path):
    params = ValidateParams(out_dir=str(tmp_path / "validated"), max_reject_fraction=0.0)
    return validate_manifest(manifest, params, min_frames=8, n_workers=2, progress=False)


def test_parquet_converts_to_a_manifest_that_validates(dataset, tmp_path):
    root, videos = dataset
    rows = [
        verl_row(0, videos[0], "multiple choice", "B", "What is the man doing?",
                 ["A. eating", "B. cooking", "C. running", "D. dancing"]),
        verl_row(1, videos[1], "numerical", "3", "How many cups are on the table?"),
        verl_row(2, videos[2], "free-form", "A man cooks pasta.", "Describe the video."),
        verl_row(3, videos[0], "OCR", "STOP", "What does the sign say?"),
        verl_row(4, videos[1], "regression", "1.5", "How many metres does the ball travel?"),
        verl_row(5, videos[2], "multiple choice", "A, C", "Which objects appear?", ["A. cup", "B. dog", "C. pan"]),
    ]
    # one parquet column holds one type: the grounding and gqa ground truths are text here ("answer <> [s, e]")
    rows += [verl_row(6, videos[0], "iou", "[0.5, 1.25]", "When does the door open?"),
             verl_row(7, videos[1], "gqa", "B <> [0.2, 0.9]", "What is he holding?", ["A. a cup", "B. a pan"])]
    rows.append(verl_row(8, videos[2], "essay", "text", "Write an essay."))  # not convertible
    source = root / "train.parquet"
    pq.write_table(pa.Table.from_pylist(rows), source)

    out = import_manifest(source, root / "manifest.jsonl")
    assert out["rows"] == 9 and out["converted"] == 8 and out["outside"] == []
    assert out["rejects"] == [{"line": 9, "id": "doc8", "reasons": [out["rejects"][0]["reasons"][0]]}]
    assert "unknown problem_type 'essay'" in out["rejects"][0]["reasons"][0]
    manifest = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r for r in manifest}
    assert by_id["doc0"] | {"meta": None} == {
        "id": "doc0", "video": "videos/v0.mp4", "question": "What is the man doing?", "task": "mcq",
        "options": ["eating", "cooking", "running", "dancing"], "answer": "B", "split": "train", "meta": None}
    assert by_id["doc0"]["meta"]["original"]["extra_info"]["doc_id"] == "doc0"  # every original field is kept
    assert by_id["doc0"]["meta"]["original"]["prompt"][0]["content"].startswith("<video>What is the man doing?")
    assert [by_id[f"doc{i}"]["task"] for i in range(1, 8)] == ["numerical", "free_form", "ocr", "regression", "mcq",
                                                                "grounding", "gqa"]
    assert by_id["doc5"]["answer"] == "A, C" and by_id["doc5"]["multi_select"] is True
    assert by_id["doc6"]["span"] == [0.5, 1.25]
    assert by_id["doc7"]["answer"] == "B" and by_id["doc7"]["span"] == [0.2, 0.9]
    assert (root / "manifest.rejects.jsonl").read_text().count("\n") == 1

    summary = _validate(root / "manifest.jsonl", tmp_path)
    assert summary["accepted"] == 8 and summary["rejected"] == 0


def test_video_r1_jsonl_reports_bad_lines_and_converts_the_rest(dataset, tmp_path):
    root, videos = dataset
    good = {"problem_id": 1, "problem": "<image>What is on the table?", "data_type": "video",
            "problem_type": "multiple choice", "options": ["A. a cup", "B. a pan"], "process": "<think>...</think>",
            "solution": "<answer>A</answer>", "path": "./videos/v0.mp4", "data_source": "LLaVA-Video-178K"}
    lines = [
        json.dumps(good),
        json.dumps(good | {"problem_id": 2, "problem_type": "numerical", "options": [],
                           "solution": "<answer>1,200</answer>", "path": "videos/v1.mp4"}),
        "{not json",
        json.dumps(good | {"problem_id": 3, "path": None}),
        json.dumps(good | {"problem_id": 4, "problem_type": "temporal grounding", "options": [],
                           "solution": "<answer>from 0.5 to 1.5 seconds</answer>", "path": "videos/v2.mp4"}),
        json.dumps(good | {"problem_id": 5, "problem_type": "grounding", "options": [], "solution": "no span here"}),
        json.dumps(good),  # duplicate id
        "",
        json.dumps(good | {"problem_id": 6, "problem_type": "iou", "options": [],
                           "solution": "<answer>[[0.1, 0.3], [1.0, 1.4]]</answer>", "path": "videos/v2.mp4"}),
        json.dumps(good | {"problem_id": 7, "problem_type": "gqa", "options": [],
                           "solution": {"answer": "cooking", "segment": [0.2, 0.8]}}),
    ]
    source = root / "video_r1.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")

    out = import_manifest(source, root / "manifest.jsonl", split="val")
    assert out["converted"] == 5
    reasons = {r["line"]: " ".join(r["reasons"]) for r in out["rejects"]}
    assert sorted(reasons) == [3, 4, 6, 7]
    assert "not JSON" in reasons[3] and "no video path" in reasons[4]
    assert "no [start, end] span in the ground truth 'no span here'" in reasons[6]
    assert "duplicate id (first at line 1)" in reasons[7]
    rows = {r["id"]: r for r in map(json.loads, (root / "manifest.jsonl").read_text().splitlines())}
    assert rows["1"]["question"] == "What is on the table?" and rows["1"]["answer"] == "A"
    assert rows["2"]["answer"] == "1,200" and rows["4"]["span"] == [0.5, 1.5]
    assert rows["6"]["spans"] == [[0.1, 0.3], [1.0, 1.4]] and all(r["split"] == "val" for r in rows.values())
    assert rows["7"]["answer"] == "cooking" and rows["7"]["span"] == [0.2, 0.8]

    summary = _validate(root / "manifest.jsonl", tmp_path)
    assert summary["accepted"] == 5 and summary["rejected"] == 0


def test_cli_import_warns_about_videos_outside_the_manifest_folder(dataset, tmp_path, capsys):
    root, videos = dataset
    elsewhere = counting_clip(tmp_path / "elsewhere" / "far.mp4", 20)
    row = {"id": "far", "problem": "Which?", "problem_type": "multiple choice", "options": ["x", "y"],
           "solution": "<answer>B</answer>", "path": str(elsewhere)}
    source = root / "far.json"
    source.write_text(json.dumps([row]), encoding="utf-8")
    main(["import", str(source), str(root / "out" / "manifest.jsonl")])
    captured = capsys.readouterr()
    assert "1 of 1 rows converted" in captured.out
    assert "lie outside" in captured.err and "data.allow_outside: true" in captured.err
    written = json.loads((root / "out" / "manifest.jsonl").read_text())
    assert written["video"] == str(elsewhere)


def test_cli_import_refuses_an_unknown_format(tmp_path):
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(SystemExit, match="unknown input format '.csv'"):
        main(["import", str(tmp_path / "data.csv"), str(tmp_path / "m.jsonl")])


def test_problem_types_and_option_labels():
    assert [task_of(t, False) for t in ("multiple choice", "Free-Form", "exact_match", "iou", "OCR", None)] == [
        "mcq", "free_form", "open", "grounding", "ocr", "open"]
    assert task_of(None, True) == "mcq"
    assert option_texts(["A. a cup", "B. a pan"]) == ["a cup", "a pan"]
    assert option_texts(["a cup", "B. a pan"]) == ["a cup", "B. a pan"]  # labels only when every option has its own
