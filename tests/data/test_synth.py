import json
import math

import numpy as np

from resadapt.config import ShardParams, SynthParams
from resadapt.data.manifest import read_manifest
from resadapt.data.shards import write_shards
from resadapt.data.synth import DIRECTIONS, N_DIRECTIONS, PALETTE, STRIPES, build_dataset
from resadapt.data.video import decode_frames, ffmpeg_exe, probe
from resadapt.io import sha256_file


def build(tmp_path, name, **over):
    params = SynthParams(out_dir=str(tmp_path / name), n_frames=6, frame_side=112, splits={"train": 4, "eval": 3},
                         grounding_fraction=0.4, **over)
    return build_dataset(params, progress=False)


def test_same_seed_gives_identical_files(tmp_path):
    a, b = build(tmp_path, "a"), build(tmp_path, "b")
    assert a.read_bytes() == b.read_bytes()
    videos_a = sorted((a.parent / "videos").iterdir())
    assert len(videos_a) == 7
    for va in videos_a:
        assert va.read_bytes() == (b.parent / "videos" / va.name).read_bytes()
    c = build(tmp_path, "c", seed=1)
    assert c.read_bytes() != a.read_bytes()


def test_rows_are_consistent_with_what_was_rendered(tmp_path):
    manifest = build(tmp_path, "d")
    rows, rejects = read_manifest(manifest)
    assert not rejects and len(rows) == 7
    assert {s.split for _, s in rows} == {"train", "eval"}
    for _, s in rows:
        meta = s.meta
        target = meta["frames"][meta["target_frame"]]
        assert target["colour"] in s.question
        hold = 4 if s.split == "eval" else 1  # default hold: eval videos at 4x the frames, each colour held
        assert meta["hold"] == hold and len(meta["frames"]) == 6 * hold
        info = probe(manifest.parent / s.video)
        assert (info.n_frames, info.width) == (6 * hold, 112)
        assert abs(info.duration - 3.0) < 0.01  # same timing as an unheld video: 6 colours at 2 per second
        if s.task == "mcq":
            assert s.options[s.letters.index(s.answer)] == target["glyph"]
            assert len(set(s.options)) == 4
        else:
            run = meta["target_frame"] // hold
            assert s.span == (run / 2.0, (run + 1) / 2.0)
            assert json.loads(s.answer) == list(s.span)
        frames = decode_frames(manifest.parent / s.video, list(range(6 * hold)), (112, 112))
        for frame, label in zip(frames, meta["frames"], strict=True):
            corner = frame[1:4, 1:4].reshape(-1, 3).mean(axis=0)  # inside the border
            assert np.abs(corner - PALETTE[label["colour"]]).max() < 25
            x, y, w, h = label["box"]
            assert frame[y : y + h, x : x + w].min() < 80  # the dark glyph is where the label says


def test_stripes_glyphs(tmp_path):
    rows, _ = read_manifest(build(tmp_path, "s", glyph="stripes", glyph_size=12))
    for _, s in rows:
        assert all(f["glyph"] in STRIPES for f in s.meta["frames"])
        if s.task == "mcq":
            assert sorted(s.options) == sorted(STRIPES)


# sha256 of a tiny rendering and its shard with the pinned package versions (imageio-ffmpeg 0.8.1's ffmpeg, numpy,
# Pillow). A change here changes data/synth and so dvc.lock: update both together, on purpose.
GOLDEN = {
    "manifest.jsonl": "2a392a82c78e1c84e13a9505443f32993643f6abab0ca45b6b52e01a0e1bfe43",
    "train-00000.mp4": "c88a1f11b6876d1252d7dcfecc20eda30031d706bef807c49e6cf124611ee704",
    "train-00001.mp4": "346994dc8c35b89cfb08d1a3cfe8243b11912a822ff4c0ebd64bf3c5b75b7cd4",
    "train-000000.tar": "4f9493fbedc21556de45fe4c2072988af04b6c078e20e4a78807b39e97e18909",
}


def tiny_rendering(root) -> dict[str, str]:
    manifest = build_dataset(SynthParams(out_dir=str(root / "synth"), n_frames=4, frame_side=64, glyph_size=8,
                                         splits={"train": 2}, hold={}, n_workers=1), progress=False)
    index = write_shards(manifest, ShardParams(out_dir=str(root / "shards"), n_frames=4, n_workers=1), progress=False)
    files = [manifest, *sorted((manifest.parent / "videos").iterdir()), root / "shards" / "train-000000.tar"]
    assert index["splits"]["train"]["shards"][0]["sha256"] == sha256_file(files[-1])
    return {f.name: sha256_file(f) for f in files}


def test_a_tiny_rendering_matches_its_golden_hashes(tmp_path):
    assert tiny_rendering(tmp_path) == GOLDEN


def test_the_bytes_do_not_depend_on_the_cpus_simd(tmp_path, monkeypatch):
    """ffmpeg with ``-cpuflags 0`` runs its plain C code paths, as on a CPU without the SIMD this one has: the
    rendering and the shard stay byte-identical (before the bit-exact scaler flags, both differed)."""
    wrapper = tmp_path / "ffmpeg-no-simd"
    wrapper.write_text(f'#!/bin/sh\nexec "{ffmpeg_exe()}" -cpuflags 0 "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("RESADAPT_FFMPEG", str(wrapper))
    ffmpeg_exe.cache_clear()
    try:
        assert tiny_rendering(tmp_path) == GOLDEN
    finally:
        monkeypatch.delenv("RESADAPT_FFMPEG")
        ffmpeg_exe.cache_clear()


def test_the_direction_table_is_the_same_under_any_libm():
    """cos/sin are rounded to integers; a libm that is off by a few ulps could only flip a value within ~1e-12 of a
    rounding boundary, and none is closer than 0.01."""
    margins = [abs(abs(1024 * f(2 * math.pi * k / N_DIRECTIONS)) % 1 - 0.5)
               for k in range(N_DIRECTIONS) for f in (math.cos, math.sin)]
    assert min(margins) > 0.01
    assert all(abs(a * a + b * b - 1024**2) < 2 * 1024 for a, b in DIRECTIONS)  # unit vectors, scaled
