import json

import numpy as np

from resadapt.config import SynthParams
from resadapt.data.manifest import read_manifest
from resadapt.data.synth import PALETTE, STRIPES, build_dataset
from resadapt.data.video import decode_frames, probe


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
