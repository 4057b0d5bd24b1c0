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
    params = SynthParams(**{"out_dir": str(tmp_path / name), "n_frames": 6, "frame_side": 112,
                            "splits": {"train": 4, "eval": 3}, "grounding_fraction": 0.4, **over})
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
    "manifest.jsonl": "e66be828bfc8676a77b2fee5f0a12850da5302259e25d0f1ad7145d1e74b0fd2",
    "train-00000.mp4": "550f8afb504bda22446f0c36e6f2e538281951b206a98c0323634520e6a20857",
    "train-00001.mp4": "69c8564e3555385bbdf87afddb7b6ef4701dae7ca4952881a07b97c3215303b7",
    "train-000000.tar": "16714acb051392bb2550cbd09e235d84b2e14b3f59b33d68816a7873cb534a17",
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


def test_a_look_changes_nuisances_only_and_leaves_other_splits_untouched(tmp_path):
    look = {"background": [50, 205], "border_fraction": 0.1, "shade": 24, "frame_side": 140, "phrasing": "alt"}
    plain = build(tmp_path, "p", hold={})
    looked = build(tmp_path, "l", hold={}, looks={"eval": look})
    rows = {s.id: s for _, s in read_manifest(looked)[0]}
    before = {s.id: s for _, s in read_manifest(plain)[0]}
    for key, s in rows.items():
        if s.split == "train":  # a split's rendering depends on its own name and index alone
            assert s == before[key]
            assert (looked.parent / s.video).read_bytes() == (plain.parent / s.video).read_bytes()
            continue
        assert probe(looked.parent / s.video).width == 140
        target = s.meta["frames"][s.meta["target_frame"]]
        assert target["colour"] in s.question and s.question != before[key].question  # reworded
        assert "bordered" in s.question and "frame with the" not in s.question
        frames = decode_frames(looked.parent / s.video, list(range(6)), (140, 140))
        for frame, label in zip(frames, s.meta["frames"], strict=True):
            corner = frame[1:4, 1:4].reshape(-1, 3).mean(axis=0)
            assert np.abs(corner - PALETTE[label["colour"]]).max() < 24 + 25  # a shade of the palette colour
            assert np.abs(frame[12, 70].astype(int) - corner).max() < 30  # the border is 14 px wide


def test_a_long_split_shows_the_queried_colour_briefly(tmp_path):
    manifest = build(tmp_path, "long", hold={}, splits={"eval_long": 12}, long={"eval_long": {"frames": 32,
                                                                                             "brief": [1, 2]}})
    rows = [s for _, s in read_manifest(manifest)[0]]
    missed = 0
    for s in rows:
        runs, meta = s.meta["runs"], s.meta
        assert s.task == "mcq" and sum(runs) == 32 and len(meta["frames"]) == 32
        info = probe(manifest.parent / s.video)
        assert info.n_frames == 32 and abs(info.duration - 3.0) < 0.01  # 6 colours' time, 32 frames
        target = meta["frames"][meta["target_frame"]]["colour"]
        assert target in s.question
        shown = [i for i, f in enumerate(meta["frames"]) if f["colour"] == target]
        assert 1 <= len(shown) <= 2 and shown == list(range(shown[0], shown[0] + len(shown)))
        assert all(r >= 5 for i, r in enumerate(runs) if meta["frames"][sum(runs[:i])]["colour"] != target)
        frame = decode_frames(manifest.parent / s.video, [shown[0]], (112, 112))[0]
        assert np.abs(frame[1:4, 1:4].reshape(-1, 3).mean(axis=0) - PALETTE[target]).max() < 25
        sampled = {round((k + 0.5) * 32 / 8 - 0.5) for k in range(8)}  # 8 uniform frames of 32 miss it sometimes
        missed += not sampled & set(shown)
    assert 0 < missed < len(rows)
