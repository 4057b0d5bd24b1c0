"""End to end with a real Qwen-VL backbone: ``dvc repro`` on a user's own videos (made here) with a tiny random
Qwen2.5-VL / Qwen3-VL checkpoint and a tiny CLIP encoder, both built in the test and pinned by the pipeline."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from resadapt.backbone.tiny_qwen import build
from tests.conftest import counting_clip, mcq_row, write_manifest
from tests.features.conftest import tiny_clip

REPO = Path(__file__).resolve().parents[1]
ENV_KEYS = {"DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def sh(cwd, *cmd, check=True):
    return subprocess.run(cmd, cwd=cwd, env={**os.environ, **ENV_KEYS}, capture_output=True, text=True, check=check)


def user_videos(root: Path) -> Path:
    """A user's folder: a manifest and mp4s (multiple choice and grounding rows in train / val / eval)."""
    rows = []
    for i in range(8):
        split = "train" if i < 4 else "val" if i < 6 else "eval"
        counting_clip(root / "clips" / f"c{i}.mp4", 24, size=(112, 168), fps=8.0)
        if i % 2:
            rows.append({"id": f"g{i}", "video": f"clips/c{i}.mp4", "question": "When is the brightest frame?",
                         "options": [], "answer": "[1.0, 2.0]", "span": [1.0, 2.0], "task": "grounding",
                         "split": split})
        else:
            rows.append(mcq_row(f"m{i}", f"clips/c{i}.mp4", split))
    write_manifest(root / "manifest.jsonl", rows)
    return root


def project(tmp: Path, kind: str) -> Path:
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, tmp / name)
    for name in ("stages", "resadapt"):
        shutil.copytree(REPO / name, tmp / name, ignore=shutil.ignore_patterns("__pycache__"))
    data = user_videos(tmp / "my_videos")
    checkpoint = build(kind, tmp / "ckpt" / kind)
    clip = tiny_clip(tmp / "ckpt" / "clip")
    params = yaml.safe_load((tmp / "params.yaml").read_text())
    params["data"]["dir"] = str(data.relative_to(tmp))
    params["shard"].update(n_frames=4, maxcount=3, patch_factor=32 if kind == "qwen3_vl" else 28)
    params["backbone"].update(source="hf", checkpoint=str(checkpoint), device="cpu", max_new_tokens=3)
    params["features"].update(encoder="hf", checkpoint=clip, side=32, splits=["train", "val", "eval"])
    params["train"].update(steps=2, prompts=2, allocations=2, answers=2, width=16, heads=2, checkpoint_every=1,
                           rollout_batch=3, update_batch=2, device="cpu", threads=1)
    params["train_nosim"].update(steps=2)
    if kind == "qwen2_5_vl":  # ResAdapt-RL with a LoRA adapter on this one; the Allocator alone on the other
        params["train"].update(update_backbone=True, lora={"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0})
    params["backbone"].update(threads=1)
    params["evaluate"].update(threads=1, budgets=[0.25, 0.5, 1.0], heatmaps=1, taskres_samples=2, batch_size=4,
                              test_splits=[],
                              long_splits=[])
    params["register"].update(target_budget=0.25, min_margin=0.0)
    (tmp / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (tmp / ".gitignore").write_text("ckpt/\n")
    sh(tmp, "git", "init", "-q")
    sh(tmp, "dvc", "init", "-q")
    shutil.copytree(REPO / ".dvc/plots", tmp / ".dvc/plots")
    sh(tmp, "git", "add", "-A")
    sh(tmp, "git", "commit", "-qm", "scratch")
    return tmp


def run_pipeline(tmp_path, kind):
    root = project(tmp_path, kind)
    run = sh(root, "dvc", "repro", check=False)
    assert run.returncode == 0, run.stderr[-4000:] + run.stdout[-4000:]
    return root, run


def check_outputs(root: Path, steps: int = 2) -> dict:
    assert list((root / "data/synth").iterdir()) == [root / "data/synth/NOT_RENDERED.md"]  # nothing rendered
    identity = json.loads((root / "models/backbone/identity.json").read_text())
    assert identity["source"] == "hf" and "model.safetensors" in identity["files"]
    train = json.loads((root / "reports/train/metrics.json").read_text())
    assert train["steps"] == steps and "targets_met" not in train  # no generator labels: no label-based target
    assert 0 < train["resadapt/retention"] <= 1 and train["full/retention"] == 1.0
    live = json.loads((root / "reports/train/live/metrics.json").read_text())
    assert live["step"] == steps - 1 and "ppo" in live["loss"]  # dvclive logged the real CAPO steps
    sweep = json.loads((root / "reports/evaluate/metrics.json").read_text())
    assert {"full", "fixed_scale", "random_drop", "taskres", "resadapt", "resadapt_uniform", "resadapt_policy",
            "resadapt_x2", "resadapt_x4"} <= set(sweep)
    assert sweep["resadapt"]["r025"]["retention"] <= 0.25 + 1e-9 and sweep["full"]["r100"]["retention"] == 1.0
    assert "oracle" not in sweep  # one's own videos carry no generator labels: the report says so
    assert "no oracle rows on eval" in (root / "reports/evaluate/report.md").read_text()
    decision = json.loads((root / "reports/register/decision.json").read_text())
    margin = sweep["resadapt"]["r025"]["accuracy"] - sweep["fixed_scale"]["r025"]["accuracy"]
    assert decision["registered"] == (margin >= 0.0)
    return decision


@pytest.mark.slow
def test_dvc_repro_trains_evaluates_and_registers_against_qwen2_5_vl_with_lora(tmp_path):
    root, _ = run_pipeline(tmp_path, "qwen2_5_vl")
    decision = check_outputs(root)
    adapter = root / "models/allocator/backbone/adapter_config.json"
    assert adapter.is_file()  # ResAdapt-RL trained a LoRA adapter, saved beside the Allocator
    if decision["registered"]:
        assert (root / "models/package/backbone/trained/adapter_config.json").is_file()
        from resadapt.inference import Package

        pkg = Package(root / "models/package")
        assert pkg.backbone_spec().trained.endswith("trained") and pkg.backbone().anchored
    second = sh(root, "dvc", "repro")
    assert "Data and pipelines are up to date" in second.stdout


@pytest.mark.slow
def test_dvc_repro_against_qwen3_vl(tmp_path):
    root, run = run_pipeline(tmp_path, "qwen3_vl")
    check_outputs(root)
    assert not (root / "models/allocator/backbone").exists()  # the Allocator alone was trained
    index = json.loads((root / "data/shards/index.json").read_text())
    assert index["splits"]["train"]["samples"] == 4
