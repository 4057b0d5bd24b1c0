"""The lmms-eval chat model ``resadapt``: found through its entry point, run by the real ``lmms-eval`` CLI on a local
task with a tiny random Qwen2.5-VL and a package built in the test."""

import json
import subprocess
import sys

import pytest

from resadapt.backbone.interface import VERBATIM, Query
from resadapt.inference import Package, check_method
from tests.lmms.conftest import N_FRAMES, TASK, env_with


def test_lmms_eval_discovers_the_model_through_its_entry_point(on_path):
    from lmms_eval.models.registry_v2 import ModelRegistryV2

    registry = ModelRegistryV2()  # a fresh one: only what the installed entry points declare
    registry.load_entrypoint_manifests()
    cls = registry.get_model_class("resadapt")  # imports the class and checks it is a chat model
    assert cls.__module__ == "resadapt.lmms.model" and cls.is_simple is False


@pytest.mark.parametrize("method,budget,message", [("fixed_scale", None, "needs a budget"),
                                                   ("full", 0.5, "takes no budget"),
                                                   ("resadapt", 1.5, r"in \(0, 1\]"),
                                                   ("uniform", 0.1, "expected one of")])
def test_an_operating_point_that_means_nothing_is_refused(method, budget, message):
    with pytest.raises(ValueError, match=message):
        check_method(method, budget)


def test_a_request_without_exactly_one_video_path_is_refused_by_name():
    from lmms_eval.protocol import ChatMessages

    from resadapt.lmms.model import read_messages

    two = ChatMessages(messages=[{"role": "user", "content": [{"type": "video", "url": "a.mp4"},
                                                              {"type": "video", "url": "b.mp4"},
                                                              {"type": "text", "text": "Which?"}]}])
    with pytest.raises(ValueError, match=r"task t doc 3: .* 2 video\(s\)"):
        read_messages(two, "task t doc 3")
    one = ChatMessages(messages=[{"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
                                 {"role": "user", "content": [{"type": "video", "url": "a.mp4"},
                                                              {"type": "text", "text": "Which?"}]}])
    assert read_messages(one, "x") == ("a.mp4", "Be brief.\nWhich?")
    # and the task's prompt reaches the backbone as the task wrote it (no options or instruction of ours)
    assert Query("Be brief.\nWhich?", ("x", "y"), "mcq", 2.0, VERBATIM).prompt() == "Be brief.\nWhich?"


def test_a_video_asked_about_again_is_decoded_once(qwen_package, task_dir):
    pkg = Package(qwen_package)
    first = pkg.clip(task_dir / "v0.mp4", N_FRAMES)
    assert pkg.clip(task_dir / "v0.mp4", N_FRAMES) is first and len(first.frames) == N_FRAMES
    assert len(pkg.clip(task_dir / "v0.mp4").frames) == 8  # another frame count is another clip
    full = pkg.allocate(task_dir / "v0.mp4", "Which?", None, n_frames=N_FRAMES, method="full")
    assert full.clip is first and full.plan.retention == 1.0


@pytest.mark.slow
def test_the_lmms_eval_cli_runs_the_package_at_a_budget(qwen_package, task_dir, entry_point_path, tmp_path):
    budget = 0.25
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "lmms_eval", "--model", "resadapt", "--model_args",
         f"allocator={qwen_package},budget={budget},frames={N_FRAMES},device=cpu", "--tasks", TASK,
         "--include_path", str(task_dir), "--batch_size", "2", "--output_path", str(out), "--log_samples"],
        env=env_with(entry_point_path, tmp_path / "hf"), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    results = json.loads(next(out.rglob("*_results.json")).read_text())
    assert 0.0 <= results["results"][TASK]["accuracy,none"] <= 1.0
    samples = [json.loads(line) for line in next(out.rglob(f"*_samples_{TASK}.jsonl")).read_text().splitlines()]
    assert len(samples) == 3
    allocations = [s["token_counts"][0]["resadapt"] for s in samples]
    for a in allocations:  # every response carries its per-frame scales and what it spent
        assert a["method"] == "resadapt" and a["budget"] == budget and len(a["scales"]) == N_FRAMES
        assert 0.1 <= min(a["scales"]) and max(a["scales"]) <= 1.0 and a["retention"] <= budget + 1e-9
    mean = sum(a["retention"] for a in allocations) / len(allocations)
    assert abs(mean - budget) <= 0.02
    assert results["throughput"]["avg_retention"] == pytest.approx(mean)  # beside lmms-eval's metrics
    assert "mean retention" in run.stdout + run.stderr  # logged for the person watching the run
