"""The data stages as a user runs them (subprocess): exit codes, one-line messages, rows kept, nothing written outside
the output folder, the previous outputs intact after a failure, and DVC rerunning on a changed outside video."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import counting_clip, mcq_row, write_manifest

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t",
       "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def stage(cwd, name, *args):
    return subprocess.run([sys.executable, str(REPO / "stages" / f"{name}.py"), "--no-progress", *args], cwd=cwd,
                          env=ENV, capture_output=True, text=True)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


def changed(before: dict, root: Path) -> set[str]:
    after = snapshot(root)
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


def params(root: Path, **validate) -> Path:
    p = {"data": {"dir": "in"}, "validate": {"out_dir": "val", "max_reject_fraction": 0.5, **validate},
         "shard": {"out_dir": "shards", "n_frames": 4}}
    (root / "params.yaml").write_text(yaml.safe_dump(p))
    return root / "params.yaml"


@pytest.mark.slow
def test_the_data_stages_on_a_hostile_manifest(tmp_path):
    root = tmp_path / "in"
    for i in range(6):
        counting_clip(root / f"v{i}.mp4", 12)
    counting_clip(tmp_path / "elsewhere.mp4", 12)
    (root / "broken.mp4").write_bytes(b"\x00" * 100)
    good = [mcq_row(f"g{i}", f"v{i}.mp4", split="train" if i < 4 else "train-hard") for i in range(6)]
    lines = [json.dumps(r) for r in good] + [
        json.dumps(mcq_row("evil", "v0.mp4", split="../../../evil")),
        json.dumps(mcq_row("many", "v0.mp4", options=[str(i) for i in range(27)])),
        json.dumps(mcq_row("outside", "../elsewhere.mp4")),
        json.dumps(mcq_row("broken", "broken.mp4")),
    ]
    (root / "manifest.jsonl").write_bytes("\n".join(lines).encode() + b"\n" + b'{"id": "bad\xff"}\n')
    params(tmp_path)
    before = snapshot(tmp_path)
    run = stage(tmp_path, "validate")
    assert run.returncode == 0, run.stderr
    assert "accepted 6 of 11 rows, rejected 5" in run.stdout
    assert all(p.startswith("val/") for p in changed(before, tmp_path))
    reasons = {r["id"]: r["reasons"][0] for r in map(json.loads, (tmp_path / "val/rejects.jsonl").open())}
    assert set(reasons) == {"evil", "many", "outside", "broken", None}
    before = snapshot(tmp_path)
    run = stage(tmp_path, "shard")
    assert run.returncode == 0, run.stderr
    assert "train: 4 in 1 tar(s), train-hard: 2 in 1 tar(s); rejected 0" in run.stdout
    assert all(p.startswith("shards/") for p in changed(before, tmp_path))

    kept = snapshot(tmp_path)
    params(tmp_path, max_reject_fraction=0.1)
    run = stage(tmp_path, "validate")
    assert run.returncode == 1 and run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert "rejected 5 of 11 rows (45.5%), above validate.max_reject_fraction = 10.0%" in run.stderr
    assert changed(kept, tmp_path) == {"params.yaml", "val/failed/manifest.jsonl", "val/failed/rejects.jsonl",
                                       "val/failed/summary.json", "val/failed/report.md"}

    for i in range(6):
        (root / f"v{i}.mp4").write_bytes(b"changed after validate")
    kept = snapshot(tmp_path)
    run = stage(tmp_path, "shard")
    assert run.returncode == 1 and "rejected 6 of 6 rows (100.0%), above shard.max_reject_fraction" in run.stderr
    assert changed(kept, tmp_path) == {"shards/failed/rejects.jsonl"}  # the previous tars and index are intact

    kept = snapshot(tmp_path)
    run = stage(tmp_path, "validate", "--params", "typo.yaml")
    assert run.returncode == 1 and run.stderr.strip() == "validate: error: typo.yaml: parameters file not found"
    params(tmp_path, min_fps=30, max_fps=10)
    run = stage(tmp_path, "validate")
    assert run.returncode == 1 and "min_fps (30) must be at most max_fps (10)" in run.stderr
    assert changed(kept, tmp_path) == {"params.yaml"}


@pytest.mark.slow
def test_a_changed_outside_video_reruns_validate(tmp_path):
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    keep = {"outside", "validate"}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {k: v for k, v in pipeline["stages"].items()
                                                                  if k in keep}}))
    for name in ("stages", "resadapt"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    p = yaml.safe_load((REPO / "params.yaml").read_text())
    p["data"].update(dir="data/mine", allow_outside=True)
    p["shard"]["n_frames"] = 4
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    outside = tmp_path.parent / f"{tmp_path.name}-outside" / "clip.mp4"
    counting_clip(outside, 12)
    write_manifest(tmp_path / "data/mine/manifest.jsonl", [mcq_row("a", str(outside))])
    env = {**ENV, "PYTHONPATH": str(tmp_path)}

    def sh(*cmd):
        return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)

    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "s"]):
        assert sh(*cmd).returncode == 0
    first = sh("dvc", "repro")
    assert first.returncode == 0, first.stdout + first.stderr
    assert json.loads((tmp_path / "data/validated/summary.json").read_text())["accepted"] == 1
    assert "up to date" in sh("dvc", "status").stdout
    counting_clip(outside, 10)  # the outside video changes; nothing inside the repository does
    status = sh("dvc", "status").stdout
    assert "validate:" in status and "data/outside" in status
    second = sh("dvc", "repro")
    assert "Running stage 'validate'" in second.stdout, second.stdout + second.stderr
    shutil.rmtree(outside.parent)
