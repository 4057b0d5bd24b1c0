import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors import safe_open

from resadapt.features.texture import DIM

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
    assert f"train: 3 samples, patches (3, 4, 4, {48 + DIM}) stored as float16" in run.stdout  # + texture
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


def test_the_default_stage_pretrains_the_contrastive_encoder_and_refuses_shards_without_captions(synth, shards,
                                                                                                 tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert params["features"]["encoder"] == "contrastive"
    params["shard"]["out_dir"] = str(synth["plain"])
    params["features"].update(splits=["train", "val"], out_dir="features", device="cpu")
    params["features"]["contrastive"].update(steps=4, videos_per_step=2, dim=16, embed_dim=8)
    run = run_features(tmp_path, params)
    assert run.returncode == 0, run.stderr
    assert "contrastive encoder: 4 steps on 24 train videos (0 without captions skipped)" in run.stdout
    assert f"train: 24 samples, patches (24, 8, 4, {16 + DIM})" in run.stdout and "val: 8 samples" in run.stdout
    out = tmp_path / "features"
    config = json.loads((out / "encoder/config.json").read_text())
    assert config["params"]["steps"] == 4 and config["frames"] == 24 * 8 and "red" in config["vocab"]
    assert len(json.loads((out / "encoder/train_log.json").read_text())) == 2  # steps 0 and 3
    with safe_open(str(out / "val.safetensors"), framework="pt") as f:
        shape = f.get_slice("query_embed").get_shape()  # [N, K, E]: each question's caption words as its views
        assert f.get_slice("frame_embed").get_shape() == [8, 8, 8] and shape[::2] == [8, 8] and shape[1] >= 2
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again = run_features(tmp_path, params)  # the same bytes again (the encoder's log holds no times): DVC reruns
    assert again.returncode == 0, again.stderr  # nothing downstream of an unchanged output
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before

    params["shard"]["out_dir"] = str(shards)  # counting clips: no per-frame border colours, so no captions
    run = run_features(tmp_path, params)
    assert run.returncode == 1
    assert "features: error: features.encoder contrastive: " in run.stderr and "use features.encoder hf" in run.stderr
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
