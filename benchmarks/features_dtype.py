"""Does storing the built-in features in float16 change the default pipeline? (on demand, a few minutes on CPU)

Runs the real stages on a reduced built-in set in a scratch folder: synth → validate → shard → backbone, the
features stage twice (``features.dtype`` float32 and float16), then ``train`` on each. Prints the largest
difference between the stored features, between the eval-split scales one Allocator gives from either file, and
the train stage's metrics of the two runs side by side.

    python benchmarks/features_dtype.py [--backbone-steps 150] [--train-steps 60]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def stage(cwd: Path, name: str, params: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, str(REPO / "stages" / f"{name}.py"), "--params", str(params),
                          "--no-progress"], cwd=cwd, env=env, capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"{name} failed:\n{run.stdout}\n{run.stderr}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone-steps", type=int, default=150)
    ap.add_argument("--train-steps", type=int, default=60)
    args = ap.parse_args()

    from resadapt.allocator.model import Allocator
    from resadapt.capo.train import deterministic_scales
    from resadapt.features.coarse import TENSORS, load_features

    root = Path(tempfile.mkdtemp(prefix="features_dtype_"))
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    base["synth"].update(splits={"train": 48, "val": 16, "eval": 24})
    base["backbone"].update(steps=args.backbone_steps)
    base["train"].update(steps=args.train_steps, checkpoint_every=args.train_steps)
    base["features"].update(splits=["train", "val", "eval"])
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(base, sort_keys=False))
    for name in ("synth", "validate", "shard", "backbone"):
        stage(root, name, params)
    metrics = {}
    for dtype in ("float32", "float16"):
        run = dict(base, features=dict(base["features"], dtype=dtype, out_dir=f"data/features_{dtype}"),
                   train=dict(base["train"], out_dir=f"models/allocator_{dtype}"))
        run_params = root / f"params_{dtype}.yaml"
        run_params.write_text(yaml.safe_dump(run, sort_keys=False))
        stage(root, "features", run_params)
        shutil.rmtree(root / "checkpoints", ignore_errors=True)
        stage(root, "train", run_params)
        metrics[dtype] = json.loads((root / "reports/train/metrics.json").read_text())

    f32, f16 = (load_features(root / f"data/features_{d}", "eval") for d in ("float32", "float16"))
    n = len(f32.keys)
    index = list(range(n))
    diff = {name: (a - b).abs().max().item() for name, a, b in zip(TENSORS, f32.select(index), f16.select(index),
                                                                   strict=True) if a.is_floating_point()}
    alloc32 = Allocator.from_pretrained(root / "models/allocator_float32").eval()
    alloc16 = Allocator.from_pretrained(root / "models/allocator_float16").eval()
    s32, s16 = deterministic_scales(alloc32, f32, index), deterministic_scales(alloc32, f16, index)
    t16 = deterministic_scales(alloc16, f16, index)
    print(json.dumps({
        "eval_samples": n,
        "max_abs_feature_diff": diff,
        "same_allocator_max_abs_scale_diff": (s32 - s16).abs().max().item(),
        "allocators_trained_on_each_max_abs_scale_diff": (s32 - t16).abs().max().item(),
        "train_metrics": {k: {d: metrics[d].get(k) for d in metrics} for k in metrics["float32"]
                          if isinstance(metrics["float32"][k], (int, float)) and "seconds" not in k},
    }, indent=1))
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
