import hashlib
import json
import subprocess

import pytest
import webdataset as wds

import resadapt.data.shards as shards
from resadapt.config import ShardParams
from resadapt.data.shards import (
    base_size,
    iter_split,
    read_index,
    sample_key,
    sampled_labels,
    sampled_needed,
    write_shards,
)
from tests.conftest import counting_clip, frame_index, mcq_row, write_manifest


@pytest.fixture
def manifest(tmp_path):
    root = tmp_path / "in"
    rows = []
    for i in range(5):
        counting_clip(root / f"v{i}.mp4", 20 + i)
        rows.append(mcq_row(f"s{i}", f"v{i}.mp4", split="train" if i < 3 else "eval"))
    rows.append(mcq_row("weird.id:with-dots", "v0.mp4", split="eval"))
    return write_manifest(root / "manifest.jsonl", rows)


def params(tmp_path, name="out", **over):
    return ShardParams(out_dir=str(tmp_path / name), n_frames=4, maxcount=2, **over)


def test_round_trip_through_webdataset(manifest, tmp_path):
    index = write_shards(manifest, params(tmp_path), progress=False)
    assert index["splits"]["train"]["samples"] == 3 and index["splits"]["eval"]["samples"] == 3
    assert [s["samples"] for s in index["splits"]["train"]["shards"]] == [2, 1]
    assert read_index(tmp_path / "out") == index
    out = tmp_path / "out"
    for shard in index["splits"]["train"]["shards"] + index["splits"]["eval"]["shards"]:
        assert hashlib.sha256((out / shard["file"]).read_bytes()).hexdigest() == shard["sha256"]
    listing = subprocess.run(["tar", "tf", str(out / "train-000000.tar")], capture_output=True, text=True, check=True)
    assert "s0.000.jpg" in listing.stdout and "s0.json" in listing.stdout
    samples = {key: (frames, meta) for key, frames, meta in iter_split(out, "eval")}
    frames, meta = samples["s3"]
    assert frames.shape == (4, 56, 84, 3)  # 64x96 rounded to the 28-grid
    expected = [(2 * i + 1) * 23 // 8 for i in range(4)]  # segment centres of a 23-frame clip
    assert meta["frame_indices"] == expected and [frame_index(f) for f in frames] == expected
    assert meta["timestamps"] == pytest.approx([i / 10 for i in expected])
    assert meta["original_size"] == [64, 96] and meta["answer"] == "B" and meta["split"] == "eval"
    assert sample_key("weird.id:with-dots") in samples and sample_key("weird.id:with-dots").startswith("h")
    plain = next(iter(wds.WebDataset(str(out / "eval-000000.tar"), shardshuffle=False)))
    assert json.loads(plain["json"])["id"] == "s3"


def test_same_inputs_give_byte_identical_shards(manifest, tmp_path):
    a = write_shards(manifest, params(tmp_path, "a"), progress=False)
    b = write_shards(manifest, params(tmp_path, "b", n_workers=1), progress=False)
    assert a == b
    for tar in (tmp_path / "a").glob("*.tar"):
        assert tar.read_bytes() == (tmp_path / "b" / tar.name).read_bytes()


def test_a_bad_video_becomes_a_reject_and_the_rest_go_on(manifest, tmp_path):
    (manifest.parent / "v1.mp4").write_text("garbage")
    counting_clip(manifest.parent / "v4.mp4", 3)
    index = write_shards(manifest, params(tmp_path, max_reject_fraction=0.5), progress=False)
    assert index["splits"]["train"]["samples"] == 2 and index["splits"]["eval"]["samples"] == 2
    rejects = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert [(r["row"], r["id"]) for r in rejects] == [(2, "s1"), (5, "s4")]
    assert "not a readable video" in rejects[0]["reasons"][0]
    assert "3 frame(s), fewer than the 4" in rejects[1]["reasons"][0]


def test_failure_midway_keeps_the_previous_shards(manifest, tmp_path, monkeypatch):
    before = write_shards(manifest, params(tmp_path), progress=False)  # an earlier good run
    out = tmp_path / "out"
    tars = {p.name: p.read_bytes() for p in out.glob("*.tar")}
    real, calls = shards.encode_sample, []

    def flaky(*args):
        calls.append(1)
        if len(calls) == 4:
            raise OSError("disk full")
        return real(*args)

    monkeypatch.setattr(shards, "encode_sample", flaky)
    with pytest.raises(OSError, match="disk full"):
        write_shards(manifest, params(tmp_path), progress=False)
    assert read_index(out) == before
    assert {p.name: p.read_bytes() for p in out.glob("*.tar")} == tars
    assert sorted(p.name for p in out.iterdir()) == sorted([*tars, "index.json", "rejects.jsonl"])  # no temp left
    assert len(list(iter_split(out, "train"))) == 3


def test_sampled_labels_follow_the_sampled_frames():
    meta = {"frame_indices": [1, 3, 5, 7], "meta": {"frames": [{"glyph": str(i)} for i in range(8)], "target_frame": 4}}
    labels, target = sampled_labels(meta)
    assert [f["glyph"] for f in labels] == ["1", "3", "5", "7"] and target == 1  # frame 4 → nearest sampled (3)
    assert sampled_labels({"frame_indices": [0]}) == ([], None)


def test_sampled_needed_are_the_sampled_frames_of_the_needed_colours():
    colours = [c for c in "abcd" for _ in range(2)]  # every colour held for 2 frames
    frames = [{"colour": c} for c in colours]
    meta = {"frame_indices": [0, 1, 3, 4, 6], "meta": {"frames": frames, "needed_frames": [1, 7], "target_frame": 1}}
    assert sampled_needed(meta) == [0, 1, 4]  # colours a (frames 0, 1) and d (frame 6)
    assert sampled_needed({"frame_indices": [0, 2], "meta": {"frames": frames, "target_frame": 3}}) == [1]
    assert sampled_needed({"frame_indices": [0]}) is None


def test_base_size_keeps_aspect_on_the_grid():
    assert base_size(360, 640, 28, 768 * 28 * 28) == (364, 644)
    assert base_size(1080, 1920, 28, 768 * 28 * 28) == (560, 1008)
    assert base_size(1080, 1920, 32, 768 * 32 * 32) == (640, 1152)
