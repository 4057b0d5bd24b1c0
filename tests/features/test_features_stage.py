import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors import safe_open

REPO = Path(__file__).resolve().parents[2]


def run_features(cwd: Path, params: dict):
    (cwd / "params.yaml").write_text(yaml.safe_dump(params))
    return subprocess.run([sys.executable, str(REPO / "stages/features.py"), "--no-progress"], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)


@pytest.mark.slow
def test_the_features_stage_runs_a_vlm_encoder_and_a_bad_checkpoint_leaves_outputs_intact(shards, smolvlm,
                                                                                         tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["shard"]["out_dir"] = str(shards)
    params["features"].update(encoder="vlm", checkpoint=smolvlm, side=32, device="cpu", batch_size=4,
                              splits=["train"], out_dir="features")
    run = run_features(tmp_path, params)
    assert run.returncode == 0, run.stderr
    assert "train: 3 samples, patches (3, 4, 4, 48) stored as float16" in run.stdout
    out = tmp_path / "features/train.safetensors"
    with safe_open(str(out), framework="pt") as f:
        assert f.get_slice("patches").get_dtype() == "F16" and f.get_slice("text").get_dtype() == "F16"
    before = out.read_bytes()

    params["features"]["checkpoint"] = str(tmp_path / "missing")
    run = run_features(tmp_path, params)
    assert run.returncode == 1
    assert f"features (vlm, checkpoint '{tmp_path / 'missing'}'): " in run.stderr
    assert "cannot be loaded as a SmolVLM/Idefics3-style VLM" in run.stderr
    assert out.read_bytes() == before
