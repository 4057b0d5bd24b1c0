"""Real-world files, encoded in the test: the probe, the sampler and the decoder give the right frames and times."""

import json

import av
import numpy as np
import pytest

from resadapt.config import ShardParams, ValidateParams
from resadapt.data.shards import iter_split, write_shards
from resadapt.data.validate import validate_manifest
from resadapt.data.video import decode_frames, probe, sample_indices
from tests.conftest import frame_index, mcq_row, write_manifest
from tests.data.conftest import long_clip, reencoded_clip, rotated_clip, trimmed_clip, vfr_clip


def stream_times(path) -> list[float]:
    """The presentation times as the stream itself holds them (PyAV's decoded frames)."""
    with av.open(str(path)) as container:
        times = [float(frame.time) for frame in container.decode(video=0)]
    return [t - times[0] for t in times]


def test_a_rotated_phone_clip_decodes_upright_at_its_display_size(tmp_path):
    path = rotated_clip(tmp_path / "phone.mp4", tmp_path / "upright.mp4", 12)
    info = probe(path)
    assert (info.width, info.height, info.rotation % 180) == (64, 96, 90)  # display size, not the coded 96 x 64
    indices = sample_indices(info, 4)
    frames = decode_frames(path, indices, (info.height, info.width))
    upright = decode_frames(tmp_path / "upright.mp4", indices, (96, 64))
    assert np.abs(frames.astype(int) - upright.astype(int)).max() <= 2  # the same pictures, not squeezed
    assert [frame_index(f) for f in frames] == indices


def test_a_variable_frame_rate_clip_uses_the_streams_timestamps(tmp_path):
    path = vfr_clip(tmp_path / "vfr.mp4", 30)
    info = probe(path)
    assert info.vfr and info.n_frames == 30
    assert info.timestamps(range(30)) == pytest.approx(stream_times(path), abs=1e-6)
    # the last frame starts at 1 + 19 · 0.3 = 6.7 s and lasts the 0.1 s the muxer gave it: 6.8 s in all (index /
    # average fps would put frame 29 at 29 / (30 / 6.8) = 6.57 s)
    assert info.duration == pytest.approx(6.8, abs=1e-6)
    indices = sample_indices(info, 8)
    centres = [(2 * i + 1) * info.duration / 16 for i in range(8)]
    times = stream_times(path)
    for k, t in zip(indices, centres, strict=True):
        assert times[k] <= t + 1e-9 and (k + 1 == len(times) or times[k + 1] > t)  # the frame on screen at t
    assert [frame_index(f) for f in decode_frames(path, indices, (64, 96))] == indices
    manifest = write_manifest(tmp_path / "m.jsonl", [mcq_row("v", "vfr.mp4")])
    write_shards(manifest, ShardParams(out_dir=str(tmp_path / "out"), n_frames=8), progress=False)
    [(_, _, meta)] = list(iter_split(tmp_path / "out", "train"))
    assert meta["timestamps"] == pytest.approx([times[k] for k in indices], abs=1e-6)
    assert all(t < meta["duration"] for t in meta["timestamps"])


def test_an_edit_list_trim_is_accepted_with_the_frames_it_presents(tmp_path):
    path = trimmed_clip(tmp_path / "trim.mp4", 40, start=1.05)
    with av.open(str(path)) as container:
        declared = container.streams.video[0].frames
    info = probe(path)  # decodes every frame: no "truncated" verdict from the declared count
    assert info.edit_list and declared == 40 and info.n_frames == 29  # frames 11-39 of the source are shown
    assert info.duration == pytest.approx(2.9, abs=0.06)
    indices = sample_indices(info, 4)
    assert [frame_index(f) for f in decode_frames(path, indices, (64, 96))] == [11 + i for i in indices]


@pytest.mark.parametrize("name,args", [
    ("x264-10bit.mp4", ("-c:v", "libx264", "-crf", "0", "-pix_fmt", "yuv420p10le")),
    ("ffv1-10bit.mkv", ("-c:v", "ffv1", "-pix_fmt", "yuv420p10le")),
    ("x264-yuv444.mp4", ("-c:v", "libx264", "-crf", "0", "-pix_fmt", "yuv444p")),
    ("vp9.webm", ("-c:v", "libvpx-vp9", "-lossless", "1", "-deadline", "realtime", "-cpu-used", "8",
                  "-pix_fmt", "yuv420p")),
    ("x264.mkv", ("-c:v", "libx264", "-crf", "0")),
])
def test_other_depths_chroma_and_containers(tmp_path, name, args):
    path = reencoded_clip(tmp_path / name, 20, *args)
    info = probe(path)
    assert (info.width, info.height, info.n_frames) == (96, 64, 20)
    assert info.duration == pytest.approx(2.0, abs=0.01) and not info.vfr and not info.edit_list
    indices = sample_indices(info, 5)
    assert info.timestamps(indices) == pytest.approx([i / 10 for i in indices], abs=1e-3)
    assert [frame_index(f) for f in decode_frames(path, indices, (64, 96))] == indices


def _peak_rss_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


@pytest.mark.skipif(not __import__("os").access("/proc/self/clear_refs", __import__("os").W_OK),
                    reason="peak RSS cannot be reset here")
def test_a_ten_minute_clip_keeps_memory_flat(tmp_path):
    short, long = long_clip(tmp_path / "short.mp4", 10), long_clip(tmp_path / "long.mp4", 600)
    peaks = {}
    for path in (short, long, short):  # the first run pays one-off imports and allocations
        _reset_peak()
        base = _peak_rss_mib()
        info = probe(path)
        frames = decode_frames(path, sample_indices(info, 16), (28, 28))
        peaks[path.name] = _peak_rss_mib() - base
        assert frames.shape == (16, 28, 28, 3)
    assert info.n_frames == 20 and probe(long).n_frames == 1200 and probe(long).duration == pytest.approx(600)
    assert peaks["long.mp4"] < peaks["short.mp4"] + 20, peaks  # MiB: 1200 frames cost no more than 20


def test_validate_accepts_real_world_files_and_reports_what_they_are(tmp_path):
    root = tmp_path / "in"
    rotated_clip(root / "phone.mp4", root / "upright.mp4", 12)
    vfr_clip(root / "vfr.mp4", 30)
    trimmed_clip(root / "trim.mp4", 40)
    rows = [mcq_row(name, f"{name}.mp4") for name in ("phone", "upright", "vfr", "trim")]
    manifest = write_manifest(root / "manifest.jsonl", rows)
    summary = validate_manifest(manifest, ValidateParams(out_dir=str(tmp_path / "out"), max_reject_fraction=0),
                                min_frames=8, progress=False)
    assert summary["accepted"] == 4
    assert summary["real_world"] == {"rotated": [1], "vfr": [3], "edit_list": [4]}
    report = (tmp_path / "out" / "report.md").read_text()
    assert "rotated 1 (1); vfr 1 (3); edit list 1 (4)" in report
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["real_world"]["vfr"] == [3]
    index = write_shards(tmp_path / "out" / "manifest.jsonl", ShardParams(out_dir=str(tmp_path / "shards"),
                                                                          n_frames=8), progress=False)
    assert index["rejected"] == 0
    shards = {key: (frames, meta) for key, frames, meta in iter_split(tmp_path / "shards", "train")}
    assert shards["phone"][1]["original_size"] == [96, 64] and shards["phone"][0].shape[1:3] == (84, 56)
    assert np.abs(shards["phone"][0].astype(int) - shards["upright"][0].astype(int)).max() <= 8  # JPEG round trip
