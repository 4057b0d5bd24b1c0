"""Decode + shard: uniformly sampled frames at the base resolution, written as WebDataset tars per split.

A sample is ``<key>.000.jpg … <key>.NNN.jpg`` (or ``.png`` for lossless frames) plus ``<key>.json``
(timestamps, sizes, the QA fields). Tars are byte-identical for the same inputs and params (fixed mtime, fixed
member order, manifest order).
Shards are built in a temp folder and moved into place before ``index.json`` is written, last and atomically, so no
index ever claims a partial shard. A video that fails becomes a reject; the others go on.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import tarfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path

import numpy as np
import webdataset as wds
from PIL import Image
from tqdm import tqdm

from resadapt.config import ShardParams
from resadapt.data.manifest import Sample, read_manifest, sample_row
from resadapt.data.video import VideoError, decode_frames, probe, sample_indices
from resadapt.grid import smart_resize
from resadapt.io import sha256_file, write_json, write_jsonl

INDEX = "index.json"
FORMAT = "resadapt-shards/1"
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def sample_key(sample_id: str) -> str:
    """A WebDataset key for an id: the id itself when safe (no dots, slashes, spaces), else a stable hash."""
    if _SAFE_KEY.match(sample_id):
        return sample_id
    return "h" + hashlib.sha1(sample_id.encode("utf-8")).hexdigest()[:20]


def base_size(height: int, width: int, factor: int, max_pixels: int) -> tuple[int, int]:
    """The common base resolution: aspect kept, sides multiples of ``factor``, at most ``max_pixels``."""
    return smart_resize(height, width, factor, min_pixels=factor * factor, max_pixels=max_pixels)


def _encode_frame(frame: np.ndarray, params: ShardParams) -> bytes:
    buf = io.BytesIO()
    if params.frame_codec == "jpg":
        Image.fromarray(frame).save(buf, format="JPEG", quality=params.jpeg_quality)
    else:
        Image.fromarray(frame).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def encode_sample(sample: Sample, root: Path, params: ShardParams) -> dict:
    """Decode one sample's frames and build its WebDataset record; raises VideoError for an unusable video."""
    path = root / sample.video
    info = probe(path, decode=False)
    try:
        indices = sample_indices(info.n_frames, params.n_frames)
    except ValueError as exc:
        raise VideoError(path, str(exc)) from None
    height, width = base_size(info.height, info.width, params.patch_factor, params.max_pixels)
    frames = decode_frames(path, indices, (height, width))
    meta = {
        **sample_row(sample),
        "frame_indices": indices,
        "timestamps": [round(i / info.fps, 6) for i in indices],
        "original_size": [info.height, info.width],
        "size": [height, width],
        "fps": info.fps,
        "duration": info.duration,
    }
    record = {"__key__": sample_key(sample.id), "json": json.dumps(meta, sort_keys=True, ensure_ascii=False).encode()}
    record.update({f"{i:03d}.{params.frame_codec}": _encode_frame(f, params) for i, f in enumerate(frames)})
    return record


def _ordered_map(fn: Callable, items: list, n_workers: int) -> Iterator:
    """``map`` over a thread pool with a bounded window, so finished records never pile up in memory."""
    window = 4 * n_workers
    with ThreadPoolExecutor(n_workers) as pool:
        it = iter(items)
        pending = [pool.submit(fn, x) for x in islice(it, window)]
        while pending:
            yield pending.pop(0).result()
            pending.extend(pool.submit(fn, x) for x in islice(it, 1))


def _count_samples(path: Path) -> int:
    with tarfile.open(path) as tar:
        return len({m.name.split(".", 1)[0] for m in tar.getmembers()})


def write_shards(manifest: str | Path, params: ShardParams, progress: bool = True) -> dict:
    """Shard every row of ``manifest`` into ``params.out_dir``; returns the index (also written as index.json)."""
    manifest = Path(manifest)
    out_dir = Path(params.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / INDEX).unlink(missing_ok=True)
    rows, rejects = read_manifest(manifest)
    samples = [s for _, s in rows]
    row_of = {id(s): r for r, s in rows}
    tmp = out_dir / ".tmp-shards"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    writers: dict[str, wds.ShardWriter] = {}
    splits: set[str] = set()

    def job(sample: Sample) -> dict | VideoError:
        try:
            return encode_sample(sample, manifest.parent, params)
        except VideoError as exc:
            return exc

    try:
        bar = tqdm(total=len(samples), desc="shard", unit="video", disable=not progress)
        for sample, record in zip(samples, _ordered_map(job, samples, params.n_workers), strict=True):
            bar.update()
            if isinstance(record, VideoError):
                rejects.append({"row": row_of[id(sample)], "id": sample.id, "source": sample_row(sample),
                                "reasons": [f"video {sample.video!r}: {record.reason}"]})
                continue
            if sample.split not in writers:
                writers[sample.split] = wds.ShardWriter(str(tmp / f"{sample.split}-%06d.tar"), maxcount=params.maxcount,
                                                        verbose=0, encoder=False, mtime=0)
            writers[sample.split].write(record)
        bar.close()
        while writers:
            split, writer = writers.popitem()
            writer.close()
            splits.add(split)
        for stale in out_dir.glob("*.tar"):
            stale.unlink()
        for tar in sorted(tmp.glob("*.tar")):
            tar.rename(out_dir / tar.name)
    finally:
        for writer in writers.values():
            writer.close()
        shutil.rmtree(tmp, ignore_errors=True)
    index = {"format": FORMAT, "n_frames": params.n_frames, "patch_factor": params.patch_factor,
             "max_pixels": params.max_pixels, "rejected": len(rejects), "splits": {}}
    for split in sorted(splits):
        files = sorted(out_dir.glob(f"{split}-*.tar"))
        shards = [{"file": f.name, "samples": _count_samples(f), "bytes": f.stat().st_size, "sha256": sha256_file(f)}
                  for f in files]
        index["splits"][split] = {"samples": sum(s["samples"] for s in shards), "shards": shards}
    rejects.sort(key=lambda r: r["row"])
    write_jsonl(out_dir / "rejects.jsonl", rejects)
    write_json(out_dir / INDEX, index)
    return index


def sampled_labels(meta: dict) -> tuple[list[dict], int | None]:
    """A shard sample's generator labels for the frames that were sampled (not all frames of the video), and the
    queried frame's position among them (the nearest sampled frame); ([], None) for videos without labels."""
    generated = meta.get("meta") or {}
    if "frames" not in generated:
        return [], None
    indices = meta["frame_indices"]
    labels = [generated["frames"][i] for i in indices]
    target = generated.get("target_frame")
    position = None if target is None else min(range(len(indices)), key=lambda k: abs(indices[k] - target))
    return labels, position


def read_index(shard_dir: str | Path) -> dict:
    path = Path(shard_dir) / INDEX
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no shard index (run the shard stage first)")
    index = json.loads(path.read_text(encoding="utf-8"))
    if index.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown shard format {index.get('format')!r}, expected {FORMAT!r}")
    return index


def split_urls(shard_dir: str | Path, split: str) -> list[str]:
    index = read_index(shard_dir)
    if split not in index["splits"]:
        raise KeyError(f"{Path(shard_dir) / INDEX}: no split {split!r} (have {sorted(index['splits'])})")
    return [str(Path(shard_dir) / s["file"]) for s in index["splits"][split]["shards"]]


def iter_split(shard_dir: str | Path, split: str) -> Iterable[tuple[str, np.ndarray, dict]]:
    """Yield ``(key, frames uint8 [T, H, W, 3], meta)`` for one split, in shard order, via ``webdataset``."""
    dataset = wds.WebDataset(split_urls(shard_dir, split), shardshuffle=False).decode("rgb8")
    for record in dataset:
        names = sorted(k for k in record if k.endswith((".jpg", ".png")))
        yield record["__key__"], np.stack([record[k] for k in names]), record["json"]
