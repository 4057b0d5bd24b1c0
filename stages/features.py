"""Stage ``features``: coarse features for the Allocator from a frozen lightweight encoder over low-res frames.

On the default, the built-in backbone's frame stem at ``features.side`` px and its word embeddings of the question;
with ``features.encoder: hf``, a CLIP/SigLIP-style checkpoint; with ``vlm``, a SmolVLM/Idefics3-style VLM's vision
and text towers (``features.checkpoint``). Encodes on ``features.device``, ``features.batch_size`` frames at a time.
Reads the shards and the backbone; writes ``features.out_dir``/<split>.safetensors (``features.dtype``) +
<split>.json (shard keys).
"""

import torch

from resadapt.features.coarse import save_features
from resadapt.features.extract import extract_split
from resadapt.features.online import make_encoder
from resadapt.stage import StageError, run_stage


def main(params, args) -> None:
    p = params.features
    torch.set_num_threads(params.train.threads)
    if p.encoder == "builtin" and params.backbone.source != "builtin":
        raise StageError("features.encoder: builtin needs backbone.source: builtin (or use encoder: hf or vlm)")
    try:
        encoder = make_encoder(p.encoder, p.side, params.backbone.out_dir, p.checkpoint, p.device, p.batch_size)
    except (OSError, ValueError) as exc:
        raise StageError(f"features ({p.encoder}, checkpoint {p.checkpoint!r}): {exc}") from None
    for split in p.splits:
        features = extract_split(encoder, params.shard.out_dir, split, progress=not args.no_progress)
        save_features(features, p.out_dir, split, p.dtype)
        print(f"features: {split}: {len(features.keys)} samples, patches {tuple(features.patches.shape)} "
              f"stored as {p.dtype}")


if __name__ == "__main__":
    run_stage("features", __doc__, main)
