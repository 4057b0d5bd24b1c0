"""Stage ``register``: the gate, and the model package a registry version points at.

Opens only when ResAdapt beats FixedScale at ``register.target_budget`` by ``register.min_margin`` on the
evaluation split (reports/evaluate/metrics.json); says why either way (reports/register/decision.json). Writes
``register.out_dir``: the Allocator (safetensors + config), the backbone (the built-in weights, also the feature
encoder, or the pinned Qwen identity; plus the ResAdapt-RL update when one was trained), the model card
(README.md) with metrics, params, data and code revisions and the backbone's identity, lineage.json and
pipeline.json (how inference decodes, encodes and builds the backbone). With the gate closed the package holds the
card and the decision only. The GTO version is made after the commit: ``resadapt register`` (README "Model
registry").
"""

import json
from pathlib import Path

from resadapt.backbone.factory import BackboneSpec
from resadapt.features import ENCODER_DIR
from resadapt.io import atomic_dir, sha256_file, write_json
from resadapt.registry import build_package, code_revision, gate
from resadapt.stage import StageError, run_stage


def main(params, args) -> None:
    r = params.register_
    metrics_path = Path(params.evaluate.out_dir) / "metrics.json"
    if not metrics_path.is_file():
        raise StageError(f"{metrics_path}: no evaluation metrics (run the evaluate stage first)")
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    decision = gate(metrics, r.target_budget, r.min_margin)
    backbone_dir = Path(params.backbone.out_dir)
    identity = json.loads((backbone_dir / "identity.json").read_text(encoding="utf-8"))
    shards = Path(params.shard.out_dir) / "index.json"
    lineage = {
        "code_revision": code_revision(),
        "params": params.model_dump(mode="json", by_alias=True),
        "data": {"manifest_sha256": sha256_file(Path(params.validate_.out_dir) / "manifest.jsonl"),
                 "shard_index_sha256": sha256_file(shards),
                 "evaluate_split": params.evaluate.split},
        "backbone": identity | ({"model_sha256": sha256_file(backbone_dir / "model.safetensors")}
                                if params.backbone.source == "builtin" else {}),
    }
    pipeline = {"shard": params.shard.model_dump(include={"n_frames", "patch_factor", "max_pixels", "frame_codec",
                                                          "jpeg_quality"}),
                "features": params.features.model_dump(include={"encoder", "checkpoint", "side", "texture"}),
                "backbone": BackboneSpec.from_params(params).describe() | {"checkpoint": params.backbone.checkpoint,
                                                                          "updated": params.train.update_backbone},
                "evaluate_split": params.evaluate.split, "target_budget": r.target_budget}
    with atomic_dir(r.out_dir) as tmp:
        encoder = Path(params.features.out_dir) / ENCODER_DIR if params.features.encoder == "contrastive" else None
        build_package(tmp, decision, Path(params.train.out_dir), backbone_dir, pipeline, lineage, metrics, encoder)
    write_json("reports/register/decision.json", {"artifact": r.name, **vars(decision)})
    verdict = "gate open: run `resadapt register` after committing" if decision.registered else "gate closed"
    print(f"register: {verdict}: {decision.reason}")


if __name__ == "__main__":
    run_stage("register", __doc__, main)
