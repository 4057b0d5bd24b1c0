"""The gate, and GTO registration on a real git + DVC repository made in the test."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from resadapt.registry import RegistryError, fetch, gate, register, resolve, versions

IDENTITY = {"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "Test",
            "GIT_COMMITTER_EMAIL": "t@example.com"}


def sweep_metrics(ours: float, fixed: float) -> dict:
    return {"resadapt": {"r015": {"accuracy": ours, "retention": 0.12}},
            "fixed_scale": {"r015": {"accuracy": fixed, "retention": 0.14}}}


def test_the_gate_opens_only_with_the_margin():
    opened = gate(sweep_metrics(0.95, 0.30), 0.15, 0.3)
    assert opened.registered and "margin +65.0% >= required 30.0%" in opened.reason
    closed = gate(sweep_metrics(0.55, 0.30), 0.15, 0.3)
    assert not closed.registered and "margin +25.0% < required 30.0%" in closed.reason
    missing = gate(sweep_metrics(0.9, 0.3), 0.25, 0.3)
    assert not missing.registered and "no ResAdapt and FixedScale accuracy at budget 0.25" in missing.reason


STAGE = """
import json, sys
from pathlib import Path
registered = sys.argv[1] == "open"
out = Path("models/package"); out.mkdir(parents=True, exist_ok=True)
if registered:
    (out / "model.safetensors").write_bytes(b"weights " + sys.argv[2].encode())
(out / "decision.json").write_text(json.dumps({"registered": registered, "reason": "margin " + sys.argv[1]}))
Path("reports/register").mkdir(parents=True, exist_ok=True)
Path("reports/register/decision.json").write_text(json.dumps({"registered": registered}))
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env=os.environ | IDENTITY).stdout


def make_repo(tmp_path: Path, gate_state: str) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=repo, check=True)
    (repo / "make.py").write_text(STAGE)
    (repo / "dvc.yaml").write_text(
        f"stages:\n  register:\n    cmd: python make.py {gate_state} ${{seed}}\n    deps: [make.py]\n"
        "    params: [seed]\n    outs: [models/package]\n"
        "artifacts:\n  allocator:\n    path: models/package\n    type: model\n")
    (repo / "params.yaml").write_text("seed: 1\n")
    subprocess.run([sys.executable, "-m", "dvc", "repro", "-q"], cwd=repo, check=True,
                   env=os.environ | {"DVC_NO_ANALYTICS": "1"})
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "pipeline run")
    return repo


@pytest.fixture
def identity(monkeypatch):
    for k, v in IDENTITY.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")


def test_register_tags_the_commit_that_holds_the_model_and_lists_its_lineage(tmp_path, identity):
    repo = make_repo(tmp_path, "open")
    git(repo, "config", "user.name", "Test")
    git(repo, "config", "user.email", "t@example.com")
    out = register(repo, "allocator", "models/package", stage="prod", message="first")
    assert out["version"] == "v0.0.1" and out["commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert "allocator@v0.0.1" in git(repo, "tag") and "allocator#prod#1" in git(repo, "tag")
    assert resolve(repo, "allocator@prod")[0] == out["commit"] == resolve(repo, "allocator@v0.0.1")[0]
    rows = versions(repo, "allocator")
    assert rows[0]["version"] == "v0.0.1" and rows[0]["stages"] == ["prod"] and rows[0]["message"] == "first"
    # the package comes back from the DVC cache at the tagged commit, after the workspace moved on
    (repo / "params.yaml").write_text("seed: 2\n")
    subprocess.run([sys.executable, "-m", "dvc", "repro", "-q"], cwd=repo, check=True)
    fetched = fetch(repo, "allocator@prod", "models/package")
    assert (fetched / "model.safetensors").read_bytes() == b"weights 1"
    with pytest.raises(RegistryError, match="uncommitted changes"):
        register(repo, "allocator", "models/package")
    with pytest.raises(RegistryError, match="not in the registry|no such version"):
        resolve(repo, "allocator@staging")


def test_a_closed_gate_or_a_missing_identity_is_refused_with_the_reason(tmp_path, identity, monkeypatch):
    repo = make_repo(tmp_path, "closed")
    git(repo, "config", "user.name", "Test")
    git(repo, "config", "user.email", "t@example.com")
    with pytest.raises(RegistryError, match="gate did not pass.*margin closed"):
        register(repo, "allocator", "models/package")
    git(repo, "config", "--unset", "user.name")
    git(repo, "config", "--unset", "user.email")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(RegistryError, match="git identity.*git config user.name"):
        register(repo, "allocator", "models/package")
    assert "allocator@" not in git(repo, "tag")
