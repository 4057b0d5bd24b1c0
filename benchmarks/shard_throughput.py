"""Shard-stage throughput against bare ffmpeg decoding the same sampled frames to null, side by side in one run;
then the partitioned shard (Prefect tasks on a local Dask cluster) with 1 vs 2 partition workers.

    python benchmarks/shard_throughput.py [--videos 200] [--workers 2]
    python benchmarks/shard_throughput.py --quick     # a few tiny videos: checks the benchmark still runs (CI)
    python benchmarks/shard_throughput.py --quick --partitions   # and the partitioned runs (a minute: not in CI)

Prints frames/s of each and the ratios (target: shard / ffmpeg >= 0.5; partitions: 2 workers / 1 worker, which
cannot exceed the machine's cores: each partition decodes on ``--workers`` threads). The partitioned runs exclude
the Prefect temporary server's start but include the Dask cluster's, as the stage pays it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from resadapt.config import ShardParams, SynthParams
from resadapt.data.manifest import read_manifest
from resadapt.data.shards import base_size, write_shards
from resadapt.data.synth import build_dataset
from resadapt.data.video import SWS_FLAGS, ffmpeg_exe, probe, sample_indices


def bare_ffmpeg(path: Path, params: ShardParams) -> None:
    """The same select + scale as the shard stage, decoded to the null muxer: the floor any shard writer pays."""
    info = probe(path, decode=False)
    h, w = base_size(info.height, info.width, params.patch_factor, params.max_pixels)
    select = "+".join(f"eq(n\\,{i})" for i in sample_indices(info, params.n_frames))
    cmd = [ffmpeg_exe(), "-v", "error", "-filter_threads", "1", "-i", str(path), "-vf",
           f"select={select},scale={w}:{h}:flags=bicubic+{SWS_FLAGS},format=rgb24",
           "-fps_mode", "passthrough", "-pix_fmt", "rgb24", "-f", "null", "-"]
    subprocess.run(cmd, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="4 small videos, 4 frames: a smoke run")
    parser.add_argument("--partitions", action="store_true", help="with --quick: the partitioned runs too (always "
                        "without --quick)")
    args = parser.parse_args()
    side = 224
    if args.quick:
        args.videos, args.frames, side = 4, 4, 112
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synth = SynthParams(out_dir=str(tmp / "synth"), splits={"bench": args.videos}, hold={}, frame_side=side,
                            n_frames=max(args.frames, 2) if args.quick else 16, glyph_size=max(4, side * 16 // 224))
        manifest = build_dataset(synth, progress=False)
        # four tars, so that two partitions get two each
        params = ShardParams(out_dir=str(tmp / "shards"), n_frames=args.frames, n_workers=args.workers,
                             maxcount=max(1, args.videos // 4))
        videos = [manifest.parent / s.video for _, s in read_manifest(manifest)[0]]
        n = len(videos) * args.frames

        start = time.perf_counter()
        with ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(lambda p: bare_ffmpeg(p, params), videos))
        ffmpeg_s = time.perf_counter() - start

        start = time.perf_counter()
        index = write_shards(manifest, params, progress=False)
        shard_s = time.perf_counter() - start
        size = sum(s["bytes"] for split in index["splits"].values() for s in split["shards"])

        seconds = {}
        if args.partitions or not args.quick:
            from resadapt.data.shard_flow import shard_on_dask  # noqa: I001 (first: it sets Prefect's defaults)

            from prefect import flow

            @flow(name="warm-up")
            def warm_up() -> None:
                """Starts the temporary server, so that the first timing does not include it."""

            warm_up()
            for k in (1, 2):
                start = time.perf_counter()
                partitioned = shard_on_dask(manifest, params.model_copy(update={"partitions": k,
                                                                               "out_dir": str(tmp / f"p{k}")}))
                seconds[k] = time.perf_counter() - start
                assert partitioned == index, "partitioned shards differ from the one-process run"

    print(f"videos: {len(videos)}, frames: {n}, workers: {args.workers}")
    print(f"bare ffmpeg -> null : {n / ffmpeg_s:8.1f} frames/s ({ffmpeg_s:.2f} s)")
    print(f"shard stage (tars)  : {n / shard_s:8.1f} frames/s ({shard_s:.2f} s, {size / 2**20:.1f} MiB)")
    print(f"ratio shard/ffmpeg  : {ffmpeg_s / shard_s:.2f}  (target >= 0.5)")
    for k, t in seconds.items():
        print(f"{k} partition worker(s): {n / t:8.1f} frames/s ({t:.2f} s, Prefect + local Dask, same bytes)")
    if seconds:
        print(f"ratio 2/1 partition workers: {seconds[1] / seconds[2]:.2f}  ({os.cpu_count()} CPU cores here)")


if __name__ == "__main__":
    main()
