"""Prefect test harness (temporary PREFECT_HOME and database, analytics off) and a small real DVC project whose
stages write the same reports as the real pipeline, so the flows run end to end in seconds. Its register stage
decides with the real ``resadapt.registry.gate``."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-home-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DVC_NO_ANALYTICS"] = "1"

IDENTITY = {"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "Test",
            "GIT_COMMITTER_EMAIL": "t@example.com"}

EVALUATE = '''
import json, pathlib, yaml
p = yaml.safe_load(open("params.yaml"))
out = pathlib.Path("reports/evaluate"); out.mkdir(parents=True, exist_ok=True)
metrics = {"resadapt": {"r015": {"accuracy": p["acc"], "retention": 0.12, "miou": 1.0, "tokens": 120.0}},
           "fixed_scale": {"r015": {"accuracy": 0.3, "retention": 0.14, "miou": 1.0, "tokens": 144.0}},
           "checks": {"target_budget": 0.15, "resadapt_minus_fixed": p["acc"] - 0.3}}
(out / "metrics.json").write_text(json.dumps(metrics))
(out / "report.md").write_text("# Budget sweep\\n\\naccuracy %s\\n" % p["acc"])
'''

REGISTER = '''
import json, pathlib
from dataclasses import asdict
from resadapt.registry import gate
m = json.load(open("reports/evaluate/metrics.json"))
decision = gate(m, 0.15, 0.3)  # the real gate, as stages/register.py calls it
pkg = pathlib.Path("models/package"); pkg.mkdir(parents=True, exist_ok=True)
if decision.registered:
    (pkg / "model.safetensors").write_text("weights %s" % m["resadapt"]["r015"]["accuracy"])
(pkg / "decision.json").write_text(json.dumps(asdict(decision)))
pathlib.Path("reports/register").mkdir(parents=True, exist_ok=True)
pathlib.Path("reports/register/decision.json").write_text(json.dumps(asdict(decision)))
'''

FLAKY = '''
import pathlib, sys, yaml
p = yaml.safe_load(open("params.yaml"))
counter = pathlib.Path(p["counter"])
counter.write_text(counter.read_text() + "x" if counter.exists() else "x")
if p["mode"] == "user_error":
    sys.exit("prepare: error: params.yaml: prepare.mode: not a mode")
if p["mode"] == "transient" and len(counter.read_text()) == 1:
    print("Killed (out of memory)", file=sys.stderr)
    sys.exit(137)
pathlib.Path("prepared.txt").write_text("ok")
'''

DVC_YAML = """stages:
  prepare:
    cmd: python prepare.py
    deps: [prepare.py]
    params: [mode]
    outs: [prepared.txt]
  evaluate:
    cmd: python evaluate.py
    deps: [evaluate.py, prepared.txt]
    params: [acc]
    metrics:
      - reports/evaluate/metrics.json:
          cache: false
    outs:
      - reports/evaluate/report.md:
          cache: false
  register:
    cmd: python register.py
    deps: [register.py, reports/evaluate/metrics.json]
    outs: [models/package]
    metrics:
      - reports/register/decision.json:
          cache: false
artifacts:
  allocator:
    path: models/package
    type: model
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env=os.environ | IDENTITY).stdout


@pytest.fixture(scope="session", autouse=True)
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A git + DVC repository with prepare → evaluate → register, committed and reproduced once."""
    for key, value in IDENTITY.items():
        monkeypatch.setenv(key, value)
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.name", "Test")
    git(repo, "config", "user.email", "t@example.com")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=repo, check=True)
    for name, text in (("evaluate.py", EVALUATE), ("register.py", REGISTER), ("prepare.py", FLAKY),
                       ("dvc.yaml", DVC_YAML)):
        (repo / name).write_text(text)
    set_params(repo, acc=0.9, mode="ok", counter=str(tmp_path / "counter"))
    return repo


def set_params(repo: Path, **values) -> None:
    import yaml

    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text()) if path.exists() else {}
    path.write_text(yaml.safe_dump(params | values))


def reproduce_and_commit(repo: Path, message: str = "pipeline run") -> str:
    subprocess.run([sys.executable, "-m", "dvc", "repro", "-q"], cwd=repo, check=True)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD").strip()
