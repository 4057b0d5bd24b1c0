"""``resadapt benchmark``: one loaded model through ResAdapt, FixedScale and Full on a local lmms-eval task, written
as a table, a Pareto plot and metrics like reports/evaluate/."""

import json

import pytest

from resadapt.cli import main
from resadapt.lmms import BenchmarkError
from resadapt.lmms.benchmark import score_of
from tests.lmms.conftest import N_FRAMES, TASK


def test_the_score_is_the_named_metric_or_the_first_numeric_one():
    entry = {"alias": "x", "accuracy,none": 0.5, "accuracy_stderr,none": "N/A", "other,none": 2.0}
    assert score_of(entry, None) == ("accuracy,none", 0.5)
    assert score_of(entry, "other") == ("other,none", 2.0)
    with pytest.raises(BenchmarkError, match="'missing' not among the task's: accuracy,none, other,none"):
        score_of(entry, "missing")


@pytest.mark.slow
def test_benchmark_writes_the_table_and_pareto_plot_for_resadapt_fixed_scale_and_full(
        qwen_package, task_dir, on_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    out = tmp_path / "bench"
    main(["benchmark", "--model", str(qwen_package), "--tasks", TASK, "--budgets", "0.25", "--full",
          "--frames", str(N_FRAMES), "--device", "cpu", "--include-path", str(task_dir), "--local-tasks-only",
          "--out", str(out)])
    metrics = json.loads((out / "metrics.json").read_text())[TASK]
    assert set(metrics) == {"resadapt", "fixed_scale", "full"}
    assert metrics["full"]["r100"]["retention"] == 1.0  # Full spends every token
    assert abs(metrics["resadapt"]["r025"]["retention"] - 0.25) <= 0.02
    assert metrics["fixed_scale"]["r025"]["retention"] == pytest.approx(0.25, abs=0.02)  # √0.25 on 224×336 frames
    assert all(m["r025" if k != "full" else "r100"]["samples"] == 3 for k, m in metrics.items())
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {p["method"] for p in json.loads((out / "pareto.json").read_text())} == {"ResAdapt", "FixedScale", "Full"}
    report = (out / "report.md").read_text()
    assert "| method | r = 0.25 | r = 1 |" in report and "| ResAdapt |" in report and "| FixedScale |" in report
    responses = [json.loads(line) for line in (out / "responses" / "resadapt_r025.jsonl").read_text().splitlines()]
    assert len(responses) == 3 and all(len(r["scales"]) == N_FRAMES for r in responses)
    assert "ResAdapt" in capsys.readouterr().out
