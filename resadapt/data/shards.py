"""Decode + shard: uniformly sampled frames at the base resolution, written as WebDataset tars per split.

A sample is ``<key>.000.jpg … <key>.NNN.jpg`` (or ``.png`` for lossless frames) plus ``<key>.json``
(timestamps, sizes, the QA fields). Tars are byte-identical for the same inputs and params (fixed mtime, fixed
member order, manifest order). Tar ``<split>-NNNNNN`` holds that split's rows ``N * maxcount`` onwards, ``maxcount`` of
them in manifest order, minus any rejected ones: the manifest alone fixes which row lands in which tar, so several
partitions (resadapt.data.partition) write the same bytes as one process.
Shards are built in a temp folder inside the output folder and replace the previous ones only on success (rejected
share at most ``shard.max_reject_fraction``); ``index.json`` is written last and atomically, so no index ever claims
a partial shard, and readers check every tar against its sha256 and sample count there. A split's tars are the ones
its index entry lists, never the files matching a name prefix. A video that fails becomes a reject; the others go on.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import webdataset as wds
from PIL import Image
from tqdm import tqdm

from resadapt.config import ShardParams
from resadapt.data.manifest import Sample, read_manifest, resolve_video, sample_row
from resadapt.data.video import VideoError, decode_frames, probe, sample_indices
from resadapt.grid import smart_resize
from resadapt.io import sha256_file, write_json, write_jsonl

INDEX = "index.json"
FAILED = "failed"
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
        indices = sample_indices(info, params.n_frames)
    except ValueError as exc:
        raise VideoError(path, str(exc)) from None
    height, width = base_size(info.height, info.width, params.patch_factor, params.max_pixels)
    frames = decode_frames(path, indices, (height, width))
    meta = {
        **sample_row(sample),
        "frame_indices": indices,
        "timestamps": info.timestamps(indices),
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


class ShardError(ValueError):
    """Shards that cannot be trusted (index and tar disagree) or a shard run that rejected too much."""


@dataclass(frozen=True)
class PlannedShard:
    """One tar: its split, its number within the split and the manifest rows it holds (minus any reject)."""

    split: str
    number: int
    rows: tuple[int, ...]

    @property
    def file(self) -> str:
        return f"{self.split}-{self.number:06d}.tar"


def plan_shards(rows: list[tuple[int, Sample]], maxcount: int) -> list[PlannedShard]:
    """Which rows go to which tar, fixed by the manifest alone: each split's rows in manifest order, ``maxcount``
    per tar. A video that fails later leaves its tar one sample short instead of moving the rows after it, so tar
    numbers are known before any video is decoded (and partitions can write whole tars independently)."""
    by_split: dict[str, list[int]] = {}
    for row, sample in rows:
        by_split.setdefault(sample.split, []).append(row)
    return [PlannedShard(split, k // maxcount, tuple(split_rows[k:k + maxcount]))
            for split, split_rows in sorted(by_split.items()) for k in range(0, len(split_rows), maxcount)]


def write_planned(manifest: Path, samples: dict[int, Sample], plan: list[PlannedShard], params: ShardParams,
                  tmp: Path, data_dir: str | Path | None = None, allow_outside: bool = False,
                  progress: bool = False) -> list[dict]:
    """Write the tars of ``plan`` into ``tmp`` (``samples``: the manifest's rows by row number); returns the rejects.

    Each tar is written as ``<file>.part`` and renamed when complete, so a rerun of the same plan after a failure
    rewrites the same bytes and never leaves a partial tar under a tar's name. A tar whose every row is rejected is
    not written."""
    order = [samples[row] for shard in plan for row in shard.rows]

    def job(sample: Sample) -> dict | VideoError:
        try:
            if data_dir is not None:
                resolve_video(manifest.parent, sample.video, Path(data_dir), allow_outside)
            return encode_sample(sample, manifest.parent, params)
        except VideoError as exc:
            return exc
        except ValueError as exc:  # outside data.dir
            return VideoError(manifest.parent / sample.video, str(exc))

    rejects: list[dict] = []
    records = _ordered_map(job, order, params.n_workers)
    with tqdm(total=len(order), desc="shard", unit="video", disable=not progress) as bar:
        for shard in plan:
            part = tmp / f"{shard.file}.part"
            writer = None
            try:
                for row in shard.rows:
                    record = next(records)
                    bar.update()
                    if isinstance(record, VideoError):
                        rejects.append({"row": row, "id": samples[row].id, "source": sample_row(samples[row]),
                                        "reasons": [f"video {samples[row].video!r}: {record.reason}"]})
                        continue
                    if writer is None:
                        writer = wds.TarWriter(str(part), encoder=False, mtime=0, compress=False)
                    writer.write(record)
                if writer is not None:
                    writer.close()
                    writer = None
                    os.replace(part, tmp / shard.file)
            finally:
                if writer is not None:  # a failure midway; closing may fail too (disk still full): keep the first
                    try:
                        writer.close()
                    except OSError:
                        pass
                part.unlink(missing_ok=True)
    return rejects


def fresh_tmp(out_dir: Path) -> Path:
    """A new temp folder inside ``out_dir`` (same file system: the swap is renames), clearing a killed run's."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(".tmp-shards*"):
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=".tmp-shards-", dir=out_dir))


def _swap_in(tmp: Path, out_dir: Path, index: dict) -> None:
    """Replace the previous run's files by ``tmp``'s: the old index goes first and the new one comes last, so no
    index ever names a tar that is not the one it hashed."""
    (out_dir / INDEX).unlink(missing_ok=True)
    for stale in out_dir.glob("*.tar"):
        stale.unlink()
    shutil.rmtree(out_dir / FAILED, ignore_errors=True)
    for path in sorted(tmp.iterdir()):
        os.replace(path, out_dir / path.name)
    write_json(out_dir / INDEX, index)


def publish(manifest: Path, params: ShardParams, plan: list[PlannedShard], tmp: Path, rejects: list[dict],
            total: int) -> dict:
    """Index the planned tars found in ``tmp`` (counts, sha256, plan order) and swap them in; returns the index.

    ``rejects``: every reject (schema and video), ``total``: every manifest row. Above
    ``params.max_reject_fraction`` the tars are dropped, the rejects go to ``out_dir/failed/rejects.jsonl``, the
    previous shards stay and ShardError says why."""
    out_dir = Path(params.out_dir)
    rejects = sorted(rejects, key=lambda r: r["row"])
    fraction = len(rejects) / total if total else 1.0
    if fraction > params.max_reject_fraction:
        for tar in tmp.glob("*.tar"):
            tar.unlink()
        write_jsonl(tmp / "rejects.jsonl", rejects)
        shutil.rmtree(out_dir / FAILED, ignore_errors=True)
        tmp.rename(out_dir / FAILED)
        first = f"; first: row {rejects[0]['row']}: {'; '.join(rejects[0]['reasons'])}" if rejects else ""
        raise ShardError(f"{manifest}: " + (f"rejected {len(rejects)} of {total} rows ({fraction:.1%}), above "
                                            f"shard.max_reject_fraction = {params.max_reject_fraction:.1%}"
                                            if total else "the manifest has no rows")
                         + f"{first}; see {out_dir / FAILED / 'rejects.jsonl'} (the previous shards are unchanged)")
    index = {"format": FORMAT, "n_frames": params.n_frames, "patch_factor": params.patch_factor,
             "max_pixels": params.max_pixels, "rejected": len(rejects), "splits": {}}
    for shard in plan:
        path = tmp / shard.file
        if not path.is_file():  # every row of it was rejected
            continue
        split = index["splits"].setdefault(shard.split, {"samples": 0, "shards": []})
        entry = {"file": shard.file, "samples": _count_samples(path), "bytes": path.stat().st_size,
                 "sha256": sha256_file(path)}
        split["samples"] += entry["samples"]
        split["shards"].append(entry)
    write_jsonl(tmp / "rejects.jsonl", rejects)
    _swap_in(tmp, out_dir, index)
    return index


def write_shards(manifest: str | Path, params: ShardParams, progress: bool = True, data_dir: str | Path | None = None,
                 allow_outside: bool = False) -> dict:
    """Shard every row of ``manifest`` into ``params.out_dir`` in this process; returns the index (also written as
    index.json). resadapt.data.partition writes the same bytes from several partitions.

    Everything is built in a temp folder inside ``out_dir`` and replaces the previous shards only when the share of
    rejected rows is at most ``params.max_reject_fraction``; otherwise the previous shards stay, the rejects go to
    ``out_dir/failed/rejects.jsonl`` and ShardError says why. With ``data_dir``, a video must resolve inside it
    (unless ``allow_outside``)."""
    manifest = Path(manifest)
    return shard_planned(manifest, params, lambda rows, plan, tmp: write_planned(
        manifest, rows, plan, params, tmp, data_dir, allow_outside, progress))


def shard_planned(manifest: Path, params: ShardParams,
                  write: Callable[[dict[int, Sample], list[PlannedShard], Path], list[dict]]) -> dict:
    """Read and plan ``manifest``, let ``write`` (rows, plan, temp folder) write the tars and return its rejects,
    then publish; the temp folder is removed whatever happens."""
    rows, rejects = read_manifest(manifest)
    total = len(rows) + len(rejects)
    plan = plan_shards(rows, params.maxcount)
    tmp = fresh_tmp(Path(params.out_dir))
    try:
        rejects += write(dict(rows), plan, tmp)
        return publish(manifest, params, plan, tmp, rejects, total)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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


def sampled_needed(meta: dict) -> list[int] | None:
    """Positions among the sampled frames that show what the question is about: every sampled frame whose border
    colour is that of a needed frame (``meta.needed_frames``, else the target); None for videos without labels."""
    generated = meta.get("meta") or {}
    if "frames" not in generated:
        return None
    needed = generated.get("needed_frames", [generated["target_frame"]] if "target_frame" in generated else [])
    colours = {generated["frames"][i]["colour"] for i in needed}
    return [k for k, label in enumerate(sampled_labels(meta)[0]) if label["colour"] in colours]


def read_index(shard_dir: str | Path) -> dict:
    path = Path(shard_dir) / INDEX
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no shard index (run the shard stage first)")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ShardError(f"{path}: not a valid index ({exc})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        got = index.get("format") if isinstance(index, dict) else index
        raise ShardError(f"{path}: unknown shard format {got!r}, expected {FORMAT!r}")
    return index


def split_urls(shard_dir: str | Path, split: str) -> list[str]:
    """The tars of ``split`` as ``index.json`` lists them, each checked against its recorded size and sha256."""
    shard_dir = Path(shard_dir)
    index = read_index(shard_dir)
    if split not in index["splits"]:
        raise KeyError(f"{shard_dir / INDEX}: no split {split!r} (have {sorted(index['splits'])})")
    urls = []
    for entry in index["splits"][split]["shards"]:
        name = str(entry.get("file", ""))
        path = shard_dir / name
        if Path(name).name != name or not name.endswith(".tar"):
            raise ShardError(f"{shard_dir / INDEX}: shard entry {name!r} is not a tar in {shard_dir}")
        if not path.is_file():
            raise ShardError(f"{path}: listed in {INDEX} but missing")
        if path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            raise ShardError(f"{path}: does not match {INDEX} (size or sha256 differ: changed since the shard stage)")
        urls.append(str(path))
    return urls


def iter_split(shard_dir: str | Path, split: str) -> Iterable[tuple[str, np.ndarray, dict]]:
    """Yield ``(key, frames uint8 [T, H, W, 3], meta)`` for one split, in shard order, via ``webdataset``.

    Every tar is checked against ``index.json`` (sha256, size) before it is read, and its sample count after."""
    urls = split_urls(shard_dir, split)
    expected = {url: entry["samples"] for url, entry in zip(urls, read_index(shard_dir)["splits"][split]["shards"],
                                                                strict=True)}
    counts = dict.fromkeys(urls, 0)
    # every reader takes the whole split, also inside a torch.distributed run (each training rank indexes all of it)
    dataset = wds.WebDataset(urls, shardshuffle=False, nodesplitter=lambda urls: urls).decode("rgb8")
    for record in dataset:
        counts[record["__url__"]] += 1
        names = sorted(k for k in record if k.endswith((".jpg", ".png")))
        yield record["__key__"], np.stack([record[k] for k in names]), record["json"]
    for url, n in counts.items():
        if n != expected[url]:
            raise ShardError(f"{url}: holds {n} samples, {INDEX} says {expected[url]}")
