"""The scheduled path as a team runs it: ``prefect server start``, the repository's prefect.yaml deployed to a process
work pool, a worker, ``prefect deployment run``; and a plain ``python flows/retrain.py`` that prints no traceback."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.workers.process import ProcessWorker

from resadapt.audit import audit
from resadapt.registry import register, resolve
from tests.flows.conftest import git, reproduce_and_commit, set_params

REPO = Path(__file__).resolve().parents[2]  # prefect.yaml and flows/ live here


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prefect(env: dict, *args: str, timeout: float = 120) -> str:
    out = subprocess.run([sys.executable, "-m", "prefect", *args], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, f"prefect {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_healthy(url: str, server: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, f"prefect server exited with {server.returncode}"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url}: not healthy after {seconds} s")


@pytest.mark.slow
def test_a_worker_runs_the_deployed_retrain_flow_and_a_plain_run_prints_no_traceback(project, tmp_path):
    first = reproduce_and_commit(project)
    register(project, "allocator", "models/package", stage="prod")
    set_params(project, acc=0.95)
    git(project, "commit", "-qam", "acc 0.95")
    home, url = tmp_path / "prefect-home", f"http://127.0.0.1:{free_port()}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | {
        "PREFECT_HOME": str(home), "PREFECT_API_URL": url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false", "PREFECT_WORKER_QUERY_SECONDS": "1", "PYTHONPATH": str(REPO)}
    logs = tmp_path / "server.log", tmp_path / "worker.log"
    started = []
    try:
        with logs[0].open("w") as log:
            started.append(subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host",
                                             "127.0.0.1", "--port", url.split(":")[2].split("/")[0]],
                                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
        wait_healthy(url, started[0])
        with temporary_settings({PREFECT_API_URL: url}), get_client(sync_client=True) as client:
            client.create_work_pool(WorkPoolCreate(  # as `prefect work-pool create local-process --type process`
                name="local-process", type="process", base_job_template=ProcessWorker.get_default_base_job_template()))
        prefect(env, "--no-prompt", "deploy", "--name", "nightly-retrain")  # the repository's prefect.yaml
        with logs[1].open("w") as log:
            started.append(subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool",
                                             "local-process"], cwd=REPO, env=env, stdout=log,
                                            stderr=subprocess.STDOUT))
        out = prefect(env, "deployment", "run", "resadapt-retrain/nightly-retrain", "--params",
                      json.dumps({"root": str(project)}), "--watch", "--watch-interval", "1", "--watch-timeout",
                      "150", timeout=180)
        run_id = re.search(r"UUID: ([0-9a-f-]{36})", out).group(1)
        with temporary_settings({PREFECT_API_URL: url}), get_client(sync_client=True) as client:
            state = client.read_flow_run(run_id).state
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["retrain-decision"])),
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
        assert state.is_completed(), f"{state}\n{out}\n{logs[1].read_text()}"
    finally:
        for proc in reversed(started):
            stop(proc)
    assert len(artifacts) == 1 and "Retrain: promoted" in artifacts[0].data
    [record] = [json.loads(line) for line in (project / "reports/retrain/runs.jsonl").read_text().splitlines()]
    assert record["prefect_run_id"] == run_id and record["outcome"] == "promoted" and record["prod_commit"] == first
    assert resolve(project, "allocator@prod")[0] == record["experiment_commit"]
    trail = audit(project)
    assert {m["version"]: m["prefect_run_id"] for m in trail["models"]}["v0.0.2"] == run_id
    assert trail["experiments"][0]["vs_champion"]["params"] == {"acc": [0.9, 0.95]}

    # A plain run, on its own temporary server, with Prefect's analytics left at their default: the flow turns them
    # off, so no telemetry error and no "database is locked" traceback from its heartbeat.
    set_params(project, acc=0.9)  # as dvc.lock has it: nothing to retrain
    plain = {k: v for k, v in env.items() if k not in ("PREFECT_API_URL", "PREFECT_SERVER_ANALYTICS_ENABLED")}
    run = subprocess.run([sys.executable, "flows/retrain.py", "--root", str(project)], cwd=REPO, env=plain,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and '"outcome": "skipped"' in run.stdout, run.stderr
    assert "Starting temporary server" in run.stderr
    assert "Traceback" not in run.stderr and "telemetry" not in run.stderr, run.stderr
