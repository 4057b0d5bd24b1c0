"""Manifest rows of every problem type: the schema's rules (pydantic) and the great-expectations rules per type."""

import json

from resadapt.config import ValidateParams
from resadapt.data.manifest import read_manifest
from resadapt.data.validate import validate_manifest
from tests.conftest import counting_clip, mcq_row, write_manifest


def row(sample_id, task, answer, **over):
    base = {"id": sample_id, "video": "v.mp4", "question": "Q?", "answer": answer, "task": task, "split": "train"}
    return base | over


def test_schema_of_the_new_fields(tmp_path):
    path = write_manifest(tmp_path / "m.jsonl", [
        mcq_row("multi", "v.mp4", answer="A, C", multi_select=True),
        row("spans", "grounding", "[[0.1, 0.4], [1.0, 1.5]]", spans=[[0.1, 0.4], [1.0, 1.5]]),
        row("gqa", "gqa", "B", options=["x", "y"], span=[0.2, 0.6]),
        row("both", "grounding", "[0, 1]", span=[0, 1], spans=[[0, 1]]),
        row("no-span", "gqa", "cooking"),
        row("stray-span", "numerical", "3", span=[0, 1]),
        row("stray-multi", "open", "cat", multi_select=True),
        row("essay", "essay", "text"),
        row("empty-spans", "grounding", "[]", spans=[]),
    ])
    rows, rejects = read_manifest(path)
    assert [s.id for _, s in rows] == ["multi", "spans", "gqa"]
    assert rows[1][1].all_spans == [(0.1, 0.4), (1.0, 1.5)] and rows[2][1].all_spans == [(0.2, 0.6)]
    reasons = {r["id"]: " ".join(r["reasons"]) for r in rejects}
    assert "one of them" in reasons["both"] and "needs span" in reasons["no-span"]
    assert "span/spans belong to grounding and gqa rows, not numerical" in reasons["stray-span"]
    assert "multi_select belongs to mcq rows" in reasons["stray-multi"]
    assert "task" in reasons["essay"] and "spans" in reasons["empty-spans"]


def test_validate_applies_the_rules_of_each_type(tmp_path):
    root = tmp_path / "in"
    counting_clip(root / "v.mp4", 20)  # 2.0 s at 10 fps
    good = [
        mcq_row("mcq", "v.mp4"),
        mcq_row("multi", "v.mp4", answer="A, C", multi_select=True),
        mcq_row("multi-implicit", "v.mp4", answer="B, D"),
        row("num", "numerical", "1,234.5 m"), row("reg", "regression", "7"), row("math", "math", "\\frac{1}{2}"),
        row("ocr", "ocr", "STOP"), row("free", "free_form", "a man cooks"), row("open", "open", "cat"),
        row("spans", "grounding", "[[0.1, 0.4], [1.0, 1.5]]", spans=[[0.1, 0.4], [1.0, 1.5]]),
        row("gqa", "gqa", "B", options=["x", "y"], span=[0.2, 0.6]),
    ]
    bad = [
        row("num-text", "numerical", "about a dozen"),
        row("math-symbolic", "math", "x + 1"),
        row("spans-outside", "grounding", "[[0.1, 0.4], [1.0, 9.0]]", spans=[[0.1, 0.4], [1.0, 9.0]]),
        row("gqa-letter", "gqa", "C", options=["x", "y"], span=[0.2, 0.6]),
        mcq_row("multi-denied", "v.mp4", answer="A, C", multi_select=False),
        mcq_row("multi-bad-letter", "v.mp4", answer="A, F", multi_select=True),
        row("blank", "ocr", "  "),
    ]
    manifest = write_manifest(root / "manifest.jsonl", good + bad)
    summary = validate_manifest(manifest, ValidateParams(out_dir=str(tmp_path / "out"), max_reject_fraction=0.5),
                                min_frames=8, n_workers=2, progress=False)
    out = tmp_path / "out"
    accepted = [json.loads(line)["id"] for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert accepted == [r["id"] for r in good]
    lines = (out / "rejects.jsonl").read_text().splitlines()
    rejects = {r["id"]: " ".join(r["reasons"]) for r in map(json.loads, lines)}
    assert "'about a dozen' of a numerical row does not parse as a number" in rejects["num-text"]
    assert "of a math row does not parse as a number" in rejects["math-symbolic"]
    assert "is not inside the video's 0–2" in rejects["spans-outside"]
    assert "'C' is not among the option letters A, B" in rejects["gqa-letter"]
    assert "not among the option letters" in rejects["multi-denied"] and "A, F" in rejects["multi-bad-letter"]
    assert "empty answer" in rejects["blank"]
    assert summary["rejected"] == len(bad)
    multi = json.loads((out / "manifest.jsonl").read_text().splitlines()[1])
    assert multi["multi_select"] is True and "spans" not in multi
