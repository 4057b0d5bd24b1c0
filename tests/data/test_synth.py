import json
import math
import re

import numpy as np
import pytest
import torch

from resadapt.backbone.resize import resize_frames
from resadapt.config import ShardParams, SynthParams
from resadapt.data.manifest import read_manifest
from resadapt.data.shards import write_shards
from resadapt.data.synth import (
    DIRECTIONS,
    N_DIRECTIONS,
    PALETTE,
    STRIPES,
    _stripe_patch,
    ask,
    build_dataset,
    quantised_need,
    render_frame,
)
from resadapt.data.video import decode_frames, ffmpeg_exe, probe
from resadapt.io import sha256_file


def build(tmp_path, name, **over):
    params = SynthParams(out_dir=str(tmp_path / name), **({"n_frames": 6, "frame_side": 112, "glyph_size": 8,
                                                           "splits": {"train": 4, "eval": 3}, "grounding_fraction": 0.4}
                                                          | over))
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


def check_answer(s, hold: int) -> None:
    """The row's answer is right for its kind, from the per-frame labels alone."""
    meta = s.meta
    assert meta["needed_frames"][0] == meta["target_frame"]
    assert all(n % hold == hold // 2 for n in meta["needed_frames"])  # the middle of each needed colour's run
    check_question(s, meta["frames"], meta["needed_frames"], meta["question_kind"], hold)


def check_question(s, frames, needed, kind, hold):
    named = [frames[n] for n in needed]
    assert all(f["colour"] in s.question for f in named)
    assert len({f["colour"] for f in named}) == len(named) == {"which": 1, "when": 1, "same": 2, "between": 2,
                                                               "count": 3}[kind]
    if kind in ("which", "same", "count"):
        picked = s.options[ord(s.answer) - 65]
        if kind == "which":
            assert picked == named[0]["glyph"] and len(set(s.options)) == 4
        elif kind == "same":
            assert sorted(s.options) == ["no", "yes"]
            assert picked == ("yes" if named[0]["glyph"] == named[1]["glyph"] else "no")
        else:
            counted = re.search(r"show (\S+) stripes", s.question).group(1)
            assert s.options == ["0", "1", "2", "3"] and int(picked) == sum(f["glyph"] == counted for f in named)
    else:
        runs = sorted(n // hold for n in needed)
        assert s.span == (runs[0] / 2.0, (runs[-1] + 1) / 2.0)  # 2 colours per second
        assert json.loads(s.answer) == list(s.span)


def test_rows_are_consistent_with_what_was_rendered(tmp_path):
    manifest = build(tmp_path, "d")
    rows, rejects = read_manifest(manifest)
    assert not rejects and len(rows) == 7
    assert {s.split for _, s in rows} == {"train", "eval"}
    for _, s in rows:
        meta = s.meta
        hold = 4 if s.split == "eval" else 1  # default hold: eval videos at 4x the frames, each colour held
        assert meta["hold"] == hold and len(meta["frames"]) == 6 * hold
        info = probe(manifest.parent / s.video)
        assert (info.n_frames, info.width) == (6 * hold, 112)
        assert abs(info.duration - 3.0) < 0.01  # same timing as an unheld video: 6 colours at 2 per second
        check_answer(s, hold)
        frames = decode_frames(manifest.parent / s.video, list(range(6 * hold)), (112, 112))
        for frame, label in zip(frames, meta["frames"], strict=True):
            corner = frame[1:4, 1:4].reshape(-1, 3).mean(axis=0)  # inside the border
            assert np.abs(corner - PALETTE[label["colour"]]).max() < 25
            x, y, w, h = label["box"]
            assert frame[y : y + h, x : x + w].min() < 80  # the dark glyph is where the label says
            assert w == h == round(8 / label["need"])  # the patch grows as 1 / need


def test_every_kind_of_question_is_right_by_construction():
    rng = np.random.default_rng(0)
    for _ in range(40):
        frames = [render_frame(rng, 112, c, "stripes", 8, 0.5)[1].meta() for c in rng.choice(list(PALETTE), 6, False)]
        for kind in ("which", "same", "count", "when", "between"):
            q = ask(rng, frames, kind, "stripes", 2.0)
            assert q.kind == kind
            check_question(q, frames, q.needed, kind, 1)


def test_count_and_same_answers_are_balanced():
    rng = np.random.default_rng(0)
    labels = [{"colour": c, "glyph": STRIPES[int(rng.integers(4))], "box": [0, 0, 1, 1]} for c in list(PALETTE)]
    counts = [ord(ask(rng, labels, "count", "stripes", 2.0).answer) - 65 for _ in range(400)]  # options 0, 1, 2, 3
    assert all(60 < counts.count(c) < 140 for c in range(4))
    same = [ask(rng, labels, "same", "stripes", 2.0) for _ in range(400)]
    yes = sum(q.options[ord(q.answer) - 65] == "yes" for q in same)
    assert 160 < yes < 240


def test_need_is_three_over_the_stripe_period_and_grades_the_videos(tmp_path):
    rows, _ = read_manifest(build(tmp_path, "n", splits={"train": 30}, hold={}, glyph_size=8))
    needs = [[f["need"] for f in s.meta["frames"]] for _, s in rows]
    flat = [n for video in needs for n in video]
    assert min(flat) < 0.36 and max(flat) > 0.94 and all(0.3 - 1e-9 <= n <= 1 + 1e-9 for n in flat)
    assert all(n == quantised_need(n) for n in flat)  # on the eighth-pixel period grid
    assert all(max(v) - min(v) <= 0.5 + 1e-9 for v in needs)  # within +-need_spread of the video's centre
    assert np.std([np.mean(v) for v in needs]) > 0.1  # videos differ, not only frames
    for need in (1.0, 0.75, 0.5, 0.3):
        for kind in STRIPES:
            cover = _stripe_patch(kind, 240, need) / 16
            assert abs(cover.mean() - 1 / 3) < 0.025  # dark for a third of each period
            # the profile along a row (a column for horizontal stripes) repeats every p px, p·√2 for diagonals
            profile = cover[:, 0] if kind == "horizontal" else cover[0]
            spectrum = np.abs(np.fft.rfft(profile - profile.mean()))
            along = len(profile) / (np.argmax(spectrum[1:]) + 1)
            across = along if kind in ("horizontal", "vertical") else along / math.sqrt(2)
            assert abs(across - 3 / need) < 0.05 * 3 / need, (kind, need, across)


@pytest.mark.parametrize("need", [1.0, 0.5])
def test_a_glyph_keeps_its_stripes_at_its_need_and_loses_them_below(need):
    frame, label = render_frame(np.random.default_rng(3), 224, "red", "stripes", 16, need)
    x, y, w, h = label.box
    contrast = {}
    for s in (need, need / 2):
        side = round(224 * s)
        small = resize_frames(torch.from_numpy(frame)[None], (side, side))[0].float()
        patch = small[round(y * s) + 1 : round((y + h) * s) - 1, round(x * s) + 1 : round((x + w) * s) - 1]
        contrast[s] = patch.std().item()
    assert contrast[need] > 2.5 * contrast[need / 2]


def test_graded_params_are_checked():
    with pytest.raises(ValueError, match="stripes only"):
        SynthParams(glyph="digits")
    with pytest.raises(ValueError, match="does not fit"):
        SynthParams(frame_side=112, glyph_size=16)
    with pytest.raises(ValueError, match="need_range"):
        SynthParams(need_range=(0.6, 0.4))
    assert SynthParams(glyph="digits", need_range=(1.0, 1.0)).glyph == "digits"


def test_stripes_glyphs(tmp_path):
    rows, _ = read_manifest(build(tmp_path, "s", glyph="stripes", glyph_size=12, need_range=(1.0, 1.0)))
    for _, s in rows:
        assert all(f["glyph"] in STRIPES and f["need"] == 1.0 and f["box"][2] == 12 for f in s.meta["frames"])
        if s.meta["question_kind"] == "which":
            assert sorted(s.options) == sorted(STRIPES)


# sha256 of a tiny rendering and its shard with the pinned package versions (imageio-ffmpeg 0.8.1's ffmpeg, numpy,
# Pillow). A change here changes data/synth and so dvc.lock: update both together, on purpose.
GOLDEN = {
    "manifest.jsonl": "e306236ee03e5f0c45a6484ba41c25895d6b9f6aa187cdbb7b83bf4b736cbb1d",
    "train-00000.mp4": "8a8844c50f5fd3056cb576bac7c3f1ae60b978112cd44d0333bc9cec5c26ceb2",
    "train-00001.mp4": "253d87316b6ff1fa4901674188349dea3475751471d35729234fdb142605b39b",
    "train-000000.tar": "3ca09d6aef347ee84548f918c79cf60fcac8b6deba1f51237208fcf8fdb04072",
}


def tiny_rendering(root) -> dict[str, str]:
    manifest = build_dataset(SynthParams(out_dir=str(root / "synth"), n_frames=4, frame_side=64, glyph_size=6,
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


def test_a_long_split_shows_the_needed_colours_briefly(tmp_path):
    manifest = build(tmp_path, "long", hold={}, splits={"eval_long": 12}, long={"eval_long": {"frames": 32,
                                                                                             "brief": [1, 2]}})
    rows = [s for _, s in read_manifest(manifest)[0]]
    missed = 0
    for s in rows:
        runs, meta = s.meta["runs"], s.meta
        assert s.task == "mcq" and sum(runs) == 32 and len(meta["frames"]) == 32
        info = probe(manifest.parent / s.video)
        assert info.n_frames == 32 and abs(info.duration - 3.0) < 0.01  # 6 colours' time, 32 frames
        named = {meta["frames"][t]["colour"] for t in meta["needed_frames"]}
        assert all(c in s.question for c in named)
        starts = [sum(runs[:i]) for i in range(len(runs))]
        for start, r in zip(starts, runs, strict=True):
            assert (r <= 2) if meta["frames"][start]["colour"] in named else (r >= 5)
        shown = [i for i, f in enumerate(meta["frames"]) if f["colour"] in named]
        frame = decode_frames(manifest.parent / s.video, [shown[0]], (112, 112))[0]
        assert np.abs(frame[1:4, 1:4].reshape(-1, 3).mean(axis=0) - PALETTE[meta["frames"][shown[0]]["colour"]]
                      ).max() < 25
        sampled = {round((k + 0.5) * 32 / 8 - 0.5) for k in range(8)}  # 8 uniform frames of 32 miss some
        missed += not set(shown) <= sampled
    assert 0 < missed
