"""Stage ``features``: coarse features for the Allocator from a frozen lightweight encoder over low-res frames.

On the default (``features.encoder: contrastive``), a small dual encoder is first pretrained here, CLIP-style, on the
per-frame image–caption pairs of ``features.contrastive.split`` (captions name a frame's border colour only: no
question, answer or queried frame is read), then frozen and saved to ``features.out_dir``/encoder (model.safetensors,
config.json, train_log.json); its image tower gives the patch tokens, its text tower reads the question. With
``builtin``, the built-in backbone's frame stem at ``features.side`` px and its word embeddings of the question;
with ``hf``, a CLIP/SigLIP-style checkpoint; with ``vlm``, a SmolVLM/Idefics3-style VLM's vision and text towers
(``features.checkpoint``). With ``features.texture`` every patch token also carries its frame's label-free texture
statistics (``resadapt.features.texture``). Encodes on ``features.device``, ``features.batch_size`` frames at a time.
Reads the shards (and the backbone for ``builtin``); writes ``features.out_dir``/<split>.safetensors
(``features.dtype``) + <split>.json (shard keys).
"""

import time
from pathlib import Path

import torch

from resadapt.features import ENCODER_DIR
from resadapt.features.captions import captioned_frames, coarse_samples
from resadapt.features.coarse import save_features
from resadapt.features.contrastive import ContrastiveEncoder, save_dual_encoder, train_dual_encoder
from resadapt.features.extract import extract_split
from resadapt.features.online import make_encoder
from resadapt.io import write_json
from resadapt.stage import StageError, run_stage


def pretrain(params) -> tuple[ContrastiveEncoder, dict]:
    """The contrastive encoder, trained on its split's captioned frames; that split's coarse samples kept for reuse."""
    p, c = params.features, params.features.contrastive
    begin = time.perf_counter()
    samples = coarse_samples(params.shard.out_dir, c.split, p.side)
    try:
        data = captioned_frames(samples, f"{params.shard.out_dir} split {c.split!r}")
    except ValueError as exc:
        raise StageError(f"features.encoder contrastive: {exc}") from None
    decoded = time.perf_counter() - begin
    model, log = train_dual_encoder(data, p.side, c)
    seconds = time.perf_counter() - begin - decoded
    save_dual_encoder(model, Path(p.out_dir) / ENCODER_DIR, {"params": c.model_dump(), "frames": sum(
        len(f) for f in data.frames), "videos": len(data.frames), "skipped": len(data.skipped)})
    write_json(Path(p.out_dir) / ENCODER_DIR / "train_log.json", log)
    last = log[-1]
    print(f"features: contrastive encoder: {c.steps} steps on {len(data.frames)} {c.split} videos "
          f"({len(data.skipped)} without captions skipped) in {seconds:.1f} s (decoding {decoded:.1f} s); "
          f"loss {last['loss']:.4f}, caption top-1 {last['caption_top1']:.3f}", flush=True)
    return ContrastiveEncoder(model, p.side, p.device, p.batch_size), {c.split: samples}


def main(params, args) -> None:
    p = params.features
    torch.set_num_threads(params.train.threads)
    if p.encoder == "builtin" and params.backbone.source != "builtin":
        raise StageError("features.encoder: builtin needs backbone.source: builtin (or use encoder: hf or vlm)")
    read = {}
    if p.encoder == "contrastive":
        encoder, read = pretrain(params)
    else:
        try:
            encoder = make_encoder(p.encoder, p.side, params.backbone.out_dir, p.checkpoint, p.device, p.batch_size)
        except (OSError, ValueError) as exc:
            raise StageError(f"features ({p.encoder}, checkpoint {p.checkpoint!r}): {exc}") from None
    for split in p.splits:
        features = extract_split(encoder, params.shard.out_dir, split, progress=not args.no_progress,
                                 samples=read.pop(split, None), texture=p.texture)
        save_features(features, p.out_dir, split, p.dtype)
        print(f"features: {split}: {len(features.keys)} samples, patches {tuple(features.patches.shape)} "
              f"stored as {p.dtype}")


if __name__ == "__main__":
    run_stage("features", __doc__, main)
