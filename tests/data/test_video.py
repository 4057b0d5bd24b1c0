from fractions import Fraction

import numpy as np
import pytest

from resadapt.data.video import VideoError, VideoInfo, decode_frames, probe, sample_indices
from tests.conftest import counting_clip, frame_index


def test_probe_reads_real_metadata(clip_factory):
    info = probe(clip_factory("a.mp4", 20, fps=10.0))
    assert (info.width, info.height, info.n_frames) == (96, 64, 20)
    assert info.fps == pytest.approx(10.0)
    assert info.duration == pytest.approx(2.0, abs=0.11)


def cfr(n: int) -> VideoInfo:
    """A constant-frame-rate video of ``n`` frames at 10 fps (time base 1/10240, as libx264 in mp4 writes it)."""
    return VideoInfo(96, 64, 10.0, n / 10, n, pts=tuple(1024 * i for i in range(n)), end=1024 * n,
                     time_base=Fraction(1, 10240))


def test_sample_indices_are_segment_centres():
    assert sample_indices(cfr(16), 16) == list(range(16))
    assert sample_indices(cfr(40), 8) == [2, 7, 12, 17, 22, 27, 32, 37]
    assert sample_indices(cfr(23), 4) == [(2 * i + 1) * 23 // 8 for i in range(4)]
    with pytest.raises(ValueError, match="fewer than the 8"):
        sample_indices(cfr(5), 8)


def test_sample_indices_follow_presentation_times():
    # 4 frames shown 0-1 s, then 1 frame held 1-4 s: the centres of 4 segments of 4 s are 0.5, 1.5, 2.5, 3.5 s
    info = VideoInfo(96, 64, 1.25, 4.0, 5, vfr=True, pts=(0, 25, 50, 75, 100), end=400, time_base=Fraction(1, 100))
    assert sample_indices(info, 4) == [2, 4, 4, 4]
    assert info.timestamps([2, 4]) == [0.5, 1.0]


def test_decoding_picks_the_right_frames(clip_factory):
    path = clip_factory("count.mp4", 40)
    indices = sample_indices(probe(path), 8)
    frames = decode_frames(path, indices, (64, 96))
    assert frames.shape == (8, 64, 96, 3) and frames.dtype == np.uint8
    assert [frame_index(f) for f in frames] == indices


def test_decoding_resizes_and_keeps_repeated_indices(clip_factory):
    path = clip_factory("count.mp4", 10)
    frames = decode_frames(path, [3, 3, 7], (28, 56))
    assert frames.shape == (3, 28, 56, 3)
    assert [frame_index(f) for f in frames] == [3, 3, 7]


def test_path_with_spaces_quotes_and_non_ascii(tmp_path):
    path = counting_clip(tmp_path / "dir with space" / "clip 'quoted' \"x\" é漢字.mp4", 12)
    assert probe(path).n_frames == 12
    assert [frame_index(f) for f in decode_frames(path, [0, 11], (64, 96))] == [0, 11]


@pytest.mark.parametrize("make,reason", [
    (lambda p: None, "file not found"),
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_text("this is not a video\n"), "not a readable video"),
])
def test_probe_bad_files(tmp_path, make, reason):
    path = tmp_path / "bad.mp4"
    make(path)
    with pytest.raises(VideoError, match=reason) as err:
        probe(path)
    assert str(path) in str(err.value)


def test_probe_truncated_mp4(clip_factory):
    path = clip_factory("t.mp4", 30)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="t.mp4"):
        probe(path)


def test_decode_reports_missing_frames(clip_factory):
    path = clip_factory("short.mp4", 5)
    with pytest.raises(VideoError, match="decoded 5 of 6 sampled frames"):
        decode_frames(path, [0, 1, 2, 3, 4, 9], (64, 96))
