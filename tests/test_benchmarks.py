"""Benchmarks cannot rot: each one runs in its --quick mode (a smoke run: it must finish and print its table)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script,expect", [
    ("shard_throughput.py", "ratio shard/ffmpeg"),
    ("memory_estimate.py", "total GiB"),
    ("eval_decode.py", "frames identical"),
    ("capo_bandit.py", "| default | where | yes | 20 |"),
    pytest.param("backbone_prefill.py", "qwen2.5-vl", marks=pytest.mark.slow),
    pytest.param("cuda_check.py", "PASS capo/allocator", marks=pytest.mark.slow),
])
def test_benchmark_quick_mode_runs(script, expect, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "DVC_NO_ANALYTICS": "1"}
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--quick"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert expect in run.stdout
