"""Evaluate's 2x/4x-frame decoding: one ffmpeg pass per frame count against one pass for all counts, side by side
in one run, on the same videos; the frames must come out identical.

    python benchmarks/eval_decode.py [--split eval] [--videos 100] [--counts 32 64] [--workers 2]
    python benchmarks/eval_decode.py --quick     # a few tiny synthetic videos: checks it still runs (CI)

Reads the pipeline's validated manifest (``validate.out_dir`` of params.yaml, after ``dvc repro validate``) unless
--quick. The two ways run in turn, ``--repeats`` rounds, so a change of machine load hits both alike; each reports
its median. Prints seconds per video and the ratio (per-count / union).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from resadapt.config import ShardParams, SynthParams, load_params
from resadapt.data.clips import load_clips, load_clips_counts
from resadapt.data.manifest import read_manifest
from resadapt.data.synth import build_dataset


def per_count(paths, params: ShardParams, counts, workers: int) -> dict[int, list]:
    return {n: list(load_clips(paths, params, n, workers)) for n in counts}


def union(paths, params: ShardParams, counts, workers: int) -> dict[int, list]:
    clips = list(load_clips_counts(paths, params, counts, workers))
    return {n: [c[n] for c in clips] for n in counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="eval")
    parser.add_argument("--videos", type=int, default=100)
    parser.add_argument("--counts", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="4 tiny synthetic videos, counts 8 and 16, 1 round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.quick:
            args.counts, args.repeats = [8, 16], 1
            synth = SynthParams(out_dir=str(Path(tmp) / "synth"), splits={args.split: 4}, hold={}, frame_side=112,
                                n_frames=16, glyph_size=8)
            manifest, params = build_dataset(synth, progress=False), ShardParams(n_frames=4)
        else:
            config = load_params("params.yaml")
            manifest, params = Path(config.validate_.out_dir) / "manifest.jsonl", config.shard
        rows = [s for _, s in read_manifest(manifest)[0] if s.split == args.split][: args.videos]
        paths = [manifest.parent / s.video for s in rows]
        seconds: dict[str, list[float]] = {"per count": [], "union": []}
        for _ in range(args.repeats):
            clips = {}
            for name, way in (("per count", per_count), ("union", union)):
                start = time.perf_counter()
                clips[name] = way(paths, params, args.counts, args.workers)
                seconds[name].append(time.perf_counter() - start)
            for n in args.counts:
                for a, b in zip(clips["per count"][n], clips["union"][n], strict=True):
                    assert a.indices == b.indices and np.array_equal(a.frames.numpy(), b.frames.numpy()), \
                        f"{n} frames: the union decode differs"
    median = {k: statistics.median(v) for k, v in seconds.items()}
    print(f"split {args.split}: {len(paths)} videos, counts {args.counts}, {args.workers} workers, "
          f"{args.repeats} round(s); frames identical")
    for name, s in median.items():
        print(f"{name:9s}: {s:7.2f} s ({s / len(paths) * 1000:.0f} ms/video)")
    print(f"ratio per-count / union: {median['per count'] / median['union']:.2f}")


if __name__ == "__main__":
    main()
