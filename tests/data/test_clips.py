import numpy as np
import pytest

from resadapt.config import ShardParams
from resadapt.data.clips import load_clip
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
