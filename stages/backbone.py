"""Stage ``backbone``: train the built-in video-QA backbone, or pin a real Qwen-family checkpoint.

builtin: trains on the ``backbone.train_split`` shards at random per-frame scales and measures, on the held-out
``backbone.eval_split``, accuracy with every frame at 1, at the uniform ~10% budget (√0.1), with only the queried
frame at 1 (others 0.2), and the inverse. hf: records the checkpoint's identity (name, revision, file hashes).
Writes ``backbone.out_dir`` (config.json, model.safetensors, identity.json) and reports/backbone/.
"""

import json
from pathlib import Path

import torch

from resadapt.backbone.builtin_train import train_and_measure
from resadapt.backbone.pin import checkpoint_identity
from resadapt.io import atomic_dir, sha256_file, write_json
from resadapt.stage import StageError, run_stage

TARGETS = {"full/accuracy": (">=", 0.90), "uniform/accuracy": ("<=", 0.40), "oracle/accuracy": (">=", 0.85),
           "train_seconds": ("<=", 600.0)}


def main(params, args) -> None:
    p = params.backbone
    torch.set_num_threads(p.threads)
    if p.source == "hf":
        try:
            identity = checkpoint_identity(p.checkpoint, p.revision)
        except (OSError, ValueError) as exc:
            raise StageError(f"backbone.checkpoint {p.checkpoint!r}: {exc}") from None
        with atomic_dir(p.out_dir) as tmp:
            write_json(tmp / "identity.json", {"source": "hf", "engine": p.engine, **identity})
        write_json("reports/backbone/metrics.json", {"source": "hf", "pinned_files": len(identity["files"])})
        write_json("reports/backbone/train_log.json", [])
        print(f"backbone: pinned {p.checkpoint} ({len(identity['files'])} files)")
        return
    model, metrics, log = train_and_measure(
        params.shard.out_dir, p.train_split, p.eval_split, steps=p.steps, batch_size=p.batch_size, lr=p.lr,
        warmup=p.warmup, width=p.width, stem_channels=p.stem_channels, seed=p.seed, progress=not args.no_progress)
    met = {k: (metrics[k] >= t if op == ">=" else metrics[k] <= t) for k, (op, t) in TARGETS.items()}
    metrics["targets_met"] = all(met.values())
    with atomic_dir(p.out_dir) as tmp:
        model.save_pretrained(tmp)
        index = Path(params.shard.out_dir) / "index.json"
        write_json(tmp / "identity.json", {"source": "builtin", "train_split": p.train_split,
                                           "shard_index_sha256": sha256_file(index)})
    write_json("reports/backbone/metrics.json", metrics)
    write_json("reports/backbone/train_log.json", log[:: max(1, len(log) // 300)])
    print("backbone:", json.dumps({k: metrics[k] for k in ("full/accuracy", "uniform/accuracy", "oracle/accuracy",
                                                          "inverse/accuracy", "full/miou", "train_seconds")}))
    for key, ok in met.items():
        if not ok:
            op, target = TARGETS[key]
            print(f"backbone: WARNING {key} = {metrics[key]} misses its target {op} {target}")


if __name__ == "__main__":
    run_stage("backbone", __doc__, main)
