"""Stage ``features``: coarse features for the Allocator from a frozen lightweight encoder over low-res frames.

On the default, the built-in backbone's frame stem at ``features.side`` px and its word embeddings of the question;
with ``features.encoder: hf``, a CLIP/SigLIP-style checkpoint (``features.checkpoint``).
Reads the shards and the backbone; writes ``features.out_dir``/<split>.safetensors + <split>.json (shard keys).
"""

import torch

from resadapt.backbone.builtin import BuiltinVideoQA
from resadapt.features.coarse import BuiltinEncoder, HFEncoder, extract_split, save_features
from resadapt.stage import StageError, run_stage


def main(params, args) -> None:
    p = params.features
    torch.set_num_threads(params.train.threads)
    if p.encoder == "hf":
        try:
            encoder = HFEncoder(p.checkpoint, p.side)
        except (OSError, ValueError) as exc:
            raise StageError(f"features.checkpoint {p.checkpoint!r}: {exc}") from None
    elif params.backbone.source != "builtin":
        raise StageError("features.encoder: builtin needs backbone.source: builtin (or use encoder: hf)")
    else:
        encoder = BuiltinEncoder(BuiltinVideoQA.from_pretrained(params.backbone.out_dir), p.side)
    for split in p.splits:
        features = extract_split(encoder, params.shard.out_dir, split, progress=not args.no_progress)
        save_features(features, p.out_dir, split)
        print(f"features: {split}: {len(features.keys)} samples, patches {tuple(features.patches.shape)}")


if __name__ == "__main__":
    run_stage("features", __doc__, main)
