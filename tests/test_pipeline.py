"""End to end: the real DVC pipeline on a tiny built-in data set, in a scratch git repo."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
       "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def sh(cwd, *cmd, check=True):
    return subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, check=check)


@pytest.fixture
def scratch(tmp_path):
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    for name in ("stages", "resadapt"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["synth"].update(splits={"train": 4, "eval": 2, "test": 2, "eval_long": 2}, n_frames=8, frame_side=112,
                           glyph_size=8,
                           looks={"test": {"shade": 20, "frame_side": 140, "phrasing": "alt"}},
                           long={"eval_long": {"frames": 32, "brief": [1, 2]}})
    params["shard"].update(n_frames=8, maxcount=3)
    # one thread per stage: pytest-xdist runs two tests at once on two cores
    params["backbone"].update(steps=6, batch_size=2, eval_split="eval", width=16, stem_channels=8,
                              threads=1)
    params["features"].update(splits=["train", "eval", "test", "eval_long"])
    params["features"]["contrastive"].update(steps=4, videos_per_step=2, dim=16, embed_dim=8)
    params["train_nosim"].update(steps=2)
    params["train"].update(steps=3, prompts=2, allocations=2, answers=1, eval_split="eval", width=16, heads=2,
                           checkpoint_every=2, threads=1)
    params["evaluate"].update(threads=1, calibration_split="train", budgets=[0.15, 0.5, 1.0], heatmaps=2,
                              taskres_samples=2, test_splits=["test"], long_splits=["eval_long"])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(tmp_path, "git", "init", "-q")
    sh(tmp_path, "dvc", "init", "-q")
    shutil.copytree(REPO / ".dvc/plots", tmp_path / ".dvc/plots")
    sh(tmp_path, "git", "add", "-A")
    sh(tmp_path, "git", "commit", "-qm", "scratch")
    return tmp_path


@pytest.mark.slow
def test_dvc_repro_runs_the_data_stages_then_has_nothing_to_do(scratch):
    first = sh(scratch, "dvc", "repro", check=False)
    assert first.returncode == 0, first.stderr + first.stdout
    index = json.loads((scratch / "data/shards/index.json").read_text())
    assert index["splits"]["train"]["samples"] == 4 and index["splits"]["eval"]["samples"] == 2
    assert [s["samples"] for s in index["splits"]["train"]["shards"]] == [3, 1]
    assert json.loads((scratch / "data/validated/summary.json").read_text())["rejected"] == 0
    metrics = json.loads((scratch / "reports/backbone/metrics.json").read_text())
    assert metrics["steps"] == 6 and metrics["oracle/retention"] < metrics["full/retention"] == 1.0
    assert (scratch / "models/backbone/model.safetensors").is_file()
    train = json.loads((scratch / "reports/train/metrics.json").read_text())
    assert train["steps"] == 3 and 0 < train["resadapt/retention"] <= 1.5
    assert (scratch / "models/allocator/model.safetensors").is_file()
    assert (scratch / "reports/train/live/metrics.json").is_file()
    assert json.loads((scratch / "data/features/encoder/config.json").read_text())["params"]["steps"] == 4
    assert json.loads((scratch / "models/allocator/config.json").read_text())["aligned_dim"] == 8
    assert json.loads((scratch / "models/allocator_nosim/config.json").read_text())["aligned_dim"] == 0
    assert json.loads((scratch / "reports/train_nosim/metrics.json").read_text())["steps"] == 2
    sweep = json.loads((scratch / "reports/evaluate/metrics.json").read_text())
    assert set(sweep) - {"kinds"} == {"full", "fixed_scale", "random_drop", "taskres", "relevance_topk",
                          "relevance_topk_drop", "resadapt", "resadapt_uniform", "resadapt_policy", "resadapt_split",
                          "resadapt_x2", "resadapt_x4", "resadapt_nosim", "oracle", "oracle_where", "checks", "paired",
                          "splits", "allocation"}
    assert {"resadapt/policy", "resadapt/r015", "resadapt_nosim/policy"} <= set(sweep["allocation"])
    assert sweep["relevance_topk"]["r015"]["retention"] <= 0.15 + 1e-9
    if sweep["resadapt"]["r015"]["n_mcq"]:  # paired comparisons and the kinds are on multiple-choice questions
        assert set(sweep["paired"]["resadapt_vs_relevance_topk"]) == {"r015", "r050", "r100", "summary"}
        assert set(sweep["kinds"]["resadapt"]["r015"]) <= {"which", "same", "count"}
    assert set(sweep["splits"]["test"]) == set(sweep) - {"splits", "allocation", "kinds"}  # every method there too
    long = sweep["splits"]["eval_long"]  # the long videos: ResAdapt at 1x, 2x and 4x frames
    assert {"resadapt", "resadapt_x2", "resadapt_x4", "checks"} <= set(long) and "x4_minus_x1" in long["checks"]
    assert long["resadapt_x4"]["r050"]["retention"] <= 0.5 + 1e-9  # (32 one-token frames are over 0.15 here)
    assert set(sweep["resadapt"]) == {"r015", "r050", "r100"} and sweep["resadapt"]["r015"]["retention"] <= 0.15
    for name in ("pareto.png", "heatmaps.png", "report.md", "pareto.json", "per_sample.json"):
        assert (scratch / "reports/evaluate" / name).stat().st_size > 0
    assert "## Split `test`" in (scratch / "reports/evaluate/report.md").read_text()
    decision = json.loads((scratch / "reports/register/decision.json").read_text())
    margin = sweep["resadapt"]["r015"]["accuracy"] - sweep["fixed_scale"]["r015"]["accuracy"]
    assert decision["registered"] == (margin >= 0.3)
    assert (scratch / "models/package/model.safetensors").is_file() == decision["registered"]
    assert (scratch / "models/package/encoder/model.safetensors").is_file() == decision["registered"]
    assert "ResAdapt Allocator" in (scratch / "models/package/README.md").read_text()
    plots = sh(scratch, "dvc", "plots", "show", "-o", "plots_out", check=False)
    assert plots.returncode == 0, plots.stderr
    assert "retention" in (scratch / "plots_out/index.html").read_text()
    second = sh(scratch, "dvc", "repro")
    assert "Data and pipelines are up to date" in second.stdout
    # the experiment trains data-parallel: dvc.yaml's plain command re-executes itself under torchrun (2 CPU ranks);
    # it runs the train stage alone (train_nosim, evaluate and register would rerun as above, 2 minutes more)
    experiment = sh(scratch, "dvc", "exp", "run", "-S", "train.steps=4", "-S", "train.nproc=2", "train", check=False)
    assert experiment.returncode == 0, experiment.stderr + experiment.stdout
    assert "Stage 'backbone' didn't change" in experiment.stdout and "Running stage 'train'" in experiment.stdout
    assert "train: 2 ranks, gloo" in experiment.stdout
    assert json.loads((scratch / "reports/train/metrics.json").read_text())["steps"] == 4
    reward = (scratch / "reports/train/live/plots/metrics/reward.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in reward[1:]] == ["0", "1", "2", "3"]  # rank 0 alone logged
    diff = sh(scratch, "dvc", "metrics", "diff", "--json", check=False)  # workspace (the experiment) vs HEAD
    assert diff.returncode == 0 and "reports/train/metrics.json" in json.loads(diff.stdout)
    typo = sh(scratch, "dvc", "exp", "run", "-S", "+synth.seeds=4", check=False)  # synth reruns, fails fast
    assert typo.returncode != 0 and "synth.seeds: unknown key" in typo.stderr + typo.stdout


@pytest.mark.slow
def test_a_bad_param_stops_the_stage_naming_file_and_key(scratch):
    bad = scratch / "bad.yaml"
    bad.write_text("shard:\n  n_frame: 8\n")
    run = sh(scratch, sys.executable, "stages/shard.py", "--params", str(bad), check=False)
    assert run.returncode == 1
    assert f"shard: error: {bad}" in run.stderr and "shard.n_frame: unknown key" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.slow
def test_stage_help(scratch):
    run = sh(scratch, sys.executable, "stages/validate.py", "--help")
    assert "great-expectations" in run.stdout and "--params" in run.stdout


@pytest.mark.slow
def test_backbone_stage_pins_a_real_checkpoint(scratch):
    from resadapt.backbone.tiny_qwen import build

    checkpoint = build("qwen2_5_vl", scratch / "tiny-qwen")
    params = yaml.safe_load((scratch / "params.yaml").read_text())
    params["backbone"].update(source="hf", checkpoint=str(checkpoint))
    (scratch / "hf.yaml").write_text(yaml.safe_dump(params))
    run = sh(scratch, sys.executable, "stages/backbone.py", "--params", "hf.yaml", check=False)
    assert run.returncode == 0, run.stderr
    identity = json.loads((scratch / "models/backbone/identity.json").read_text())
    weights = (checkpoint / "model.safetensors").read_bytes()
    assert identity["files"]["model.safetensors"] == hashlib.sha256(weights).hexdigest()
    params["backbone"].update(checkpoint=str(scratch / "nowhere"))
    (scratch / "hf.yaml").write_text(yaml.safe_dump(params))
    run = sh(scratch, sys.executable, "stages/backbone.py", "--params", "hf.yaml", check=False)
    assert run.returncode == 1 and "backbone.checkpoint" in run.stderr and "Traceback" not in run.stderr
