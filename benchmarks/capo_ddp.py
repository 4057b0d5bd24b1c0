"""CAPO steps per second with 1 process vs 2 data-parallel ranks (torchrun, DDP; gloo on CPU, nccl on CUDA).

    PYTHONPATH=$PWD python benchmarks/capo_ddp.py [--steps 30] [--prompts 16] [--resadapt-rl] [--threads 2]
    python benchmarks/capo_ddp.py --quick      # a smoke run: 4 steps of 4 prompts

Both runs train the same Allocator with ``train_allocator`` on the same synthetic batch (rendered frames, the built-in
backbone at random weights, random coarse features): one process with ``--threads`` torch threads, then
``torchrun --standalone --nproc-per-node 2`` with ``--threads // 2`` each, so both use the same cores. Steps per
second leave out the first step (warm-up); the launch column is the whole torchrun command, start-up included. On a
2-core CPU no speed-up is expected: the ranks split the same cores and add the all-reduces. One machine holds one
GPU here at most, so multi-GPU numbers cannot be measured with this project's resources.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from resadapt.allocator.model import AllocatorConfig
from resadapt.backbone.builtin import BuiltinBackbone, BuiltinConfig, BuiltinVideoQA
from resadapt.capo.advantage import CapoCoefficients
from resadapt.capo.distributed import start, stop
from resadapt.capo.train import LoopConfig, train_allocator
from resadapt.data.sample import Video
from resadapt.data.synth import PALETTE, STRIPES, render_frame
from resadapt.features.coarse import Features

REPO = Path(__file__).resolve().parents[1]
FLAGS = ("steps", "prompts", "allocations", "answers", "videos", "frames", "threads")  # passed on to the ranks


def setup(n_videos: int, frames: int) -> tuple[list[Video], Features]:
    rng = np.random.default_rng(0)
    videos = []
    for i in range(n_videos):
        colours = [str(c) for c in rng.choice(list(PALETTE), size=frames, replace=False)]
        rendered = [render_frame(rng, 112, c, "stripes", 12) for c in colours]
        labels = [lab.glyph for _, lab in rendered]
        meta = {"question": f"Which stripe orientation is shown in the frame with the {colours[1]} border?",
                "options": list(STRIPES), "answer": chr(65 + STRIPES.index(labels[1])), "task": "mcq",
                "duration": 2.0, "frame_indices": list(range(frames))}
        videos.append(Video(f"v{i}", torch.from_numpy(np.stack([f for f, _ in rendered])), meta))
    g = torch.Generator().manual_seed(0)
    features = Features([v.key for v in videos], torch.randn(n_videos, frames, 4, 16, generator=g),
                        torch.ones(n_videos, frames, dtype=bool), torch.randn(n_videos, 5, 8, generator=g),
                        torch.ones(n_videos, 5, dtype=bool), torch.randn(n_videos, frames, 3, generator=g),
                        torch.randn(n_videos, 3, generator=g))
    return videos, features


def rank_program(args: argparse.Namespace) -> None:
    """One rank (or the one process): train, and rank 0 writes steps per second to ``args.out``."""
    ranks = start("cpu")
    torch.set_num_threads(max(1, args.threads // ranks.local_world))
    videos, features = setup(args.videos, args.frames)
    torch.manual_seed(0)
    config = BuiltinConfig(glyph_classes=list(STRIPES), colours=list(PALETTE), vocab=["which", "border"], width=16,
                           stem_channels=8)
    backbone = BuiltinBackbone(BuiltinVideoQA(config).eval(), cache=not args.resadapt_rl)
    loop = LoopConfig(steps=args.steps + 1, prompts=args.prompts, allocations=args.allocations, answers=args.answers,
                      warmup=2, checkpoint_every=10**6, update_backbone=args.resadapt_rl, rollout_batch=128)
    allocator = AllocatorConfig(patch_dim=16, text_dim=8, width=16, heads=2, depth=1, aligned_dim=3)
    with tempfile.TemporaryDirectory() as tmp:
        _, history = train_allocator(loop, allocator, CapoCoefficients(), features, videos, backbone,
                                     Path(tmp) / "ckpt", progress=False, ranks=ranks)
    if ranks.main:
        seconds = sum(h["seconds"] for h in history[1:])
        Path(args.out).write_text(json.dumps({"steps_per_s": args.steps / seconds, "ranks": ranks.world}))
    stop(ranks)


def run(args: argparse.Namespace, nproc: int, out: Path) -> dict:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k in FLAGS]
    flags += ["--resadapt-rl"] * args.resadapt_rl + ["--rank-program", f"--out={out}"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(max(1, args.threads // nproc))}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    t0 = time.perf_counter()
    done = subprocess.run([*(command if nproc > 1 else [sys.executable]), __file__, *flags], env=env,
                          capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{nproc} rank(s) failed:\n{done.stderr[-3000:]}")
    return {**json.loads(out.read_text()), "launch_s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30, help="timed steps (one warm-up step more)")
    ap.add_argument("--prompts", type=int, default=16, help="B, the global batch")
    ap.add_argument("--allocations", type=int, default=8)
    ap.add_argument("--answers", type=int, default=4)
    ap.add_argument("--videos", type=int, default=32)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2, help="torch threads in all (each rank gets its share)")
    ap.add_argument("--resadapt-rl", action="store_true", help="also update the backbone (ResAdapt-RL)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 4 steps of 4 prompts × 4 allocations")
    ap.add_argument("--rank-program", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rank_program:
        rank_program(args)
        return
    if args.quick:
        args.steps, args.prompts, args.allocations, args.answers, args.videos, args.frames = 4, 4, 4, 2, 6, 4
    print(f"B={args.prompts} M={args.allocations} N={args.answers} T={args.frames}, {args.threads} threads, "
          f"{'ResAdapt-RL' if args.resadapt_rl else 'Allocator only'}, CPU (gloo)\n")
    print("| ranks | steps/s | s/step | launch s |\n|---|---|---|---|")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for nproc in (1, 2):
            rows[nproc] = r = run(args, nproc, Path(tmp) / f"{nproc}.json")
            print(f"| {r['ranks']} | {r['steps_per_s']:.2f} | {1 / r['steps_per_s']:.3f} | {r['launch_s']:.1f} |",
                  flush=True)
    print(f"\nratio 2 ranks / 1 process (steps/s): {rows[2]['steps_per_s'] / rows[1]['steps_per_s']:.2f}")


if __name__ == "__main__":
    main()
