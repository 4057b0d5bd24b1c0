"""Stage ``train``: CAPO training of the Allocator against the frozen backbone (or jointly: ResAdapt-RL).

Reads the features and shards of ``train.split``, the backbone (built-in or a pinned Qwen checkpoint, from the one
factory), and section ``train``. Writes the Allocator (``train.out_dir``: config.json + model.safetensors), with
``update_backbone`` the updated backbone under ``train.out_dir``/backbone (full weights, or a LoRA adapter), per-step
metrics through dvclive (reports/train/live), and the held-out measurement on ``train.eval_split`` with the
deterministic policy (reports/train/metrics.json). Checkpoints every ``train.checkpoint_every`` steps to
checkpoints/allocator: killed and rerun, it resumes there.

``--nosim`` (stage ``train_nosim``): the ablation, ``train`` with ``similarity: false`` (the Allocator never sees the
encoder's frame–query similarity), ``train_nosim.steps`` steps, written to ``train_nosim.out_dir``,
reports/train_nosim and checkpoints/allocator_nosim.

Data-parallel: ``torchrun --nproc-per-node N stages/train.py`` (or ``train.nproc: N``, which re-executes this command
under torchrun); rank 0 alone logs, checkpoints and writes the outputs.
"""

import hashlib
import json
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import torch
from dvclive import Live

from resadapt.allocator.model import AllocatorConfig
from resadapt.backbone.device import pick_device
from resadapt.backbone.factory import BackboneError, BackboneSpec, LoraSpec, build_backbone, save_trained
from resadapt.backbone.pin import PinError
from resadapt.capo.advantage import CapoCoefficients
from resadapt.capo.distributed import launched, rank_device, relaunch, start, stop
from resadapt.capo.measure import measure_allocator
from resadapt.capo.train import LoopConfig, train_allocator
from resadapt.data.sample import Video
from resadapt.data.shards import iter_split
from resadapt.features.coarse import load_features
from resadapt.io import atomic_dir, sha256_file, write_json
from resadapt.stage import StageError, run_stage


def runs(params, nosim: bool) -> tuple:
    """The train params of this run, its reports folder and its checkpoints folder."""
    if not nosim:
        return params.train, Path("reports/train"), Path("checkpoints/allocator")
    ablation = params.train_nosim
    p = params.train.model_copy(update={"out_dir": ablation.out_dir, "steps": ablation.steps, "similarity": False})
    return p, Path("reports/train_nosim"), Path("checkpoints/allocator_nosim")


def load_videos(shard_dir: str, split: str, keys: list[str]) -> list[Video]:
    videos = [Video(key, torch.from_numpy(frames), meta) for key, frames, meta in iter_split(shard_dir, split)]
    if [v.key for v in videos] != keys:
        raise StageError(f"features of split {split!r} are not aligned with the shards: rerun the features stage")
    return videos


def main(params, args) -> None:
    p, reports, checkpoints = runs(params, args.nosim)
    if p.nproc > 1 and not launched():
        relaunch(p.nproc, __file__, sys.argv[1:])
    try:
        ranks = start(p.device)
        device, backbone_device = rank_device(p.device, ranks), rank_device(params.backbone.device, ranks)
    except ValueError as exc:
        raise StageError(f"train.device / backbone.device: {exc}") from None
    if ranks.world > 1 and params.backbone.engine == "vllm":
        raise StageError("backbone.engine vllm runs in one process: set train.nproc 1 (vLLM's own tensor_parallel_size "
                         "spreads it over GPUs)")
    if ranks.main and ranks.world > 1:
        print(f"train: {ranks.world} ranks, {'nccl' if device.startswith('cuda') else 'gloo'}", flush=True)
    torch.set_num_threads(max(1, p.threads // ranks.local_world))
    lora = LoraSpec(p.lora.r, p.lora.alpha, p.lora.dropout, tuple(p.lora.target_modules)) if p.lora.enabled else None
    torch.manual_seed(p.seed)  # a fresh LoRA adapter's initialisation is drawn here (under DDP, rank 0's is kept)
    try:
        spec = replace(BackboneSpec.from_params(params, trained=False), device=backbone_device)
        backbone = build_backbone(spec, trainable=p.update_backbone, lora=lora,
                                  gradient_checkpointing=p.gradient_checkpointing, cache=True)
    except (BackboneError, PinError, OSError) as exc:
        raise StageError(f"backbone: {exc}") from None
    features = load_features(params.features.out_dir, p.split)
    videos = load_videos(params.shard.out_dir, p.split, features.keys)
    loop = LoopConfig(**{k: getattr(p, k) for k in LoopConfig.__dataclass_fields__})
    # similarity false (the ablation): no aligned input, the Allocator never reads frame_embed / query_embed
    aligned = features.frame_embed.shape[-1] if p.similarity else 0
    config = AllocatorConfig(patch_dim=features.patches.shape[-1], text_dim=features.text.shape[-1], width=p.width,
                             heads=p.heads, depth=p.depth, s_min=p.s_min, s_max=p.s_max, init_scale=p.init_scale,
                             init_concentration=p.init_concentration, aligned_dim=aligned,
                             kappa_floor=p.kappa_floor)
    capo = CapoCoefficients(**p.capo.model_dump())
    # a checkpoint resumes only for the same params, backbone, features and frames
    inputs = [path for path in (Path(params.backbone.out_dir) / "model.safetensors",
                                Path(params.backbone.out_dir) / "identity.json") if path.is_file()]
    inputs += [Path(params.features.out_dir) / f"{p.split}.safetensors", Path(params.shard.out_dir) / "index.json"]
    # nproc is left out: any number of ranks trains the same way, so a checkpoint resumes under another
    fingerprint = hashlib.sha256((p.model_dump_json(exclude={"nproc"}) + "".join(map(sha256_file, inputs))).encode()
                                 ).hexdigest()
    live = Live(str(reports / "live"), dvcyaml=False, save_dvc_exp=False, report=None) if ranks.main else None

    def log(step: int, metrics: dict) -> None:
        live.step = step
        for key, value in metrics.items():
            if key != "step" and value is not None:
                live.log_metric(key, value)
        live.next_step()

    begin = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("always", RuntimeWarning)
        allocator, history = train_allocator(loop, config, capo, features, videos, backbone, checkpoints, log=log,
                                             progress=not args.no_progress, fingerprint=fingerprint,
                                             device=str(pick_device(device)), ranks=ranks)
    seconds = time.perf_counter() - begin
    stop(ranks)
    if not ranks.main:
        return
    with atomic_dir(p.out_dir) as tmp:
        allocator.save_pretrained(tmp)
        if p.update_backbone:  # ResAdapt-RL: the backbone was trained too
            save_trained(backbone, tmp / "backbone")
    if p.update_backbone:
        backbone.model.eval()
    held_out = load_features(params.features.out_dir, p.eval_split)
    metrics = measure_allocator(allocator, backbone, held_out,
                                load_videos(params.shard.out_dir, p.eval_split, held_out.keys), p.rollout_batch,
                                style=p.prompt)
    metrics["train_seconds"] = round(sum(h["seconds"] for h in history), 1)
    metrics["steps"] = len(history)
    full, ours = metrics["full/accuracy"], metrics["resadapt/accuracy"]
    if "scale/queried_over_others" in metrics:  # the generator's labels say which frame is queried
        metrics["targets_met"] = bool(ours is not None and full is not None and ours >= full - 0.05
                                      and metrics["resadapt/retention"] <= 0.15
                                      and metrics["scale/queried_over_others"] >= 3
                                      and metrics["train_seconds"] <= 900)
    write_json(reports / "metrics.json", metrics)
    print(f"train: {len(history)} steps ({seconds:.0f} s in this run); " + json.dumps(
        {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}))


def options(parser) -> None:
    parser.add_argument("--nosim", action="store_true", help="the ablation Allocator (stage train_nosim)")


if __name__ == "__main__":
    run_stage("train", __doc__, main, options)
