import numpy as np
import pytest

from resadapt.config import ShardParams
from resadapt.data.clips import load_clip, load_clip_counts, load_clips, load_clips_counts
from resadapt.data.shards import iter_split, write_shards
from resadapt.data.video import VideoError
from tests.conftest import counting_clip, frame_index, mcq_row, write_manifest


def test_a_clip_holds_exactly_the_frames_its_shard_sample_holds(tmp_path):
    root = tmp_path / "in"
    counting_clip(root / "v.mp4", 24)
    manifest = write_manifest(root / "manifest.jsonl", [mcq_row("s0", "v.mp4")])
    params = ShardParams(out_dir=str(tmp_path / "out"), n_frames=6)
    write_shards(manifest, params, progress=False)
    [(_, frames, meta)] = list(iter_split(tmp_path / "out", "train"))
    clip = load_clip(root / "v.mp4", params)
    assert clip.indices == meta["frame_indices"]
    assert np.array_equal(clip.frames.numpy(), frames)  # same decode, same size, same JPEG round trip
    more = load_clip(root / "v.mp4", params, n_frames=12)
    assert more.indices == [2 * i + 1 for i in range(12)] or len(set(more.indices)) == 12
    assert [frame_index(f) for f in more.frames.numpy()] == more.indices
    assert more.segments()[-1][1] == pytest.approx(clip.duration)


def test_too_few_frames_or_a_broken_file_name_the_file(tmp_path):
    path = counting_clip(tmp_path / "short.mp4", 5)
    with pytest.raises(VideoError, match="short.mp4.*5 frame"):
        load_clip(path, ShardParams(n_frames=8))
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    with pytest.raises(VideoError, match="bad.mp4"):
        load_clip(bad, ShardParams(n_frames=2))


def test_clips_on_threads_come_back_in_order_and_a_bad_one_does_not_stop_the_rest(tmp_path):
    paths = [counting_clip(tmp_path / f"v{i}.mp4", 12 + 4 * i) for i in range(4)]
    paths.insert(2, tmp_path / "missing.mp4")
    params = ShardParams(n_frames=6)
    clips = list(load_clips(paths, params, n_workers=3))
    assert isinstance(clips[2], VideoError) and "missing.mp4" in str(clips[2])
    for path, clip in zip(paths, clips, strict=True):
        if path.name != "missing.mp4":
            alone = load_clip(path, params)
            assert clip.indices == alone.indices and np.array_equal(clip.frames.numpy(), alone.frames.numpy())


def test_one_decode_at_several_frame_counts_gives_each_count_exactly_as_alone(tmp_path):
    path = counting_clip(tmp_path / "v.mp4", 40)
    params = ShardParams(n_frames=6)
    both = load_clip_counts(path, params, [12, 24])
    assert set(both) == {12, 24} and not set(both[12].indices) <= set(both[24].indices)  # overlapping, not nested
    for n, clip in both.items():
        alone = load_clip(path, params, n_frames=n)
        assert clip.indices == alone.indices and np.array_equal(clip.frames.numpy(), alone.frames.numpy())
        assert [frame_index(f) for f in clip.frames.numpy()] == clip.indices
    short = counting_clip(tmp_path / "short.mp4", 16)
    [ok, bad] = list(load_clips_counts([path, short], params, [12, 24]))
    assert set(ok) == {12, 24} and isinstance(bad, VideoError) and "short.mp4" in str(bad)
