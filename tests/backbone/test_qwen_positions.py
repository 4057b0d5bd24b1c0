"""Time positions of chunked clips: Qwen2.5-VL M-RoPE ids equal the native video's; Qwen3-VL prints true times."""

import re

import pytest
import torch

from resadapt.backbone.interface import Item, Query
from resadapt.backbone.qwen import QwenBackbone
from resadapt.backbone.resize import apply_plan
from resadapt.backbone.tiny_qwen import build


@pytest.fixture(scope="module")
def qwen25(tmp_path_factory):
    return QwenBackbone.load(str(build("qwen2_5_vl", tmp_path_factory.mktemp("q25"))), device="cpu")


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory):
    return QwenBackbone.load(str(build("qwen3_vl", tmp_path_factory.mktemp("q3"))), device="cpu")


def clip(grid, n_frames=8, times=()):
    torch.manual_seed(0)
    side = grid.factor * 4
    return torch.randint(0, 256, (n_frames, side, side, 3), dtype=torch.uint8), Query(
        "When does the red frame appear?", (), "grounding", 4.0, times=tuple(times))


def positions(backbone, inputs, stock: bool):
    inner = backbone.model.model
    rope = type(inner).get_rope_index.__get__(inner) if stock else inner.get_rope_index
    ids, _ = rope(**{k: v for k, v in inputs.items() if k != "pixel_values_videos"})
    video = inputs["input_ids"] == backbone.model.config.video_token_id
    return ids[:, video], ids


def native_inputs(backbone, frames, query, size):
    """The same frames as one unchunked video (all chunks at one size), through the stock processor path."""
    prompt = backbone.processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": query.prompt()}]}],
        tokenize=False, add_generation_prompt=True)
    inputs = backbone.processor(text=[prompt], videos=[frames.permute(0, 3, 1, 2)], return_tensors="pt",
                                do_sample_frames=False, do_resize=True, cap_pixels_per_frame=False)
    inputs["second_per_grid_ts"] = torch.tensor([2 / (len(frames) / query.duration)])
    assert inputs["video_grid_thw"].tolist() == [[len(frames) // 2, size[0] // 14, size[1] // 14]]
    return inputs


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_chunked_temporal_ids_equal_the_native_video(qwen25, scale):
    frames, query = clip(qwen25.grid)
    item = Item(frames, [scale] * len(frames), query)
    chunked, plans = qwen25.encode([item])
    assert len(plans[0].chunks) == 4 and len(set(plans[0].sizes)) == 1
    resized = torch.cat(apply_plan(frames, plans[0]))
    native = native_inputs(qwen25, resized, query, plans[0].sizes[0])
    ours, ours_all = positions(qwen25, chunked, stock=False)
    theirs, theirs_all = positions(qwen25, native, stock=True)
    assert torch.equal(chunked["input_ids"], native["input_ids"])  # one vision block holding every chunk's pads
    assert torch.equal(ours, theirs)  # temporal, height and width ids of every visual token
    assert ours[0].unique().numel() == 4 and (ours[0].unique().diff() > 0).all()  # one temporal id per chunk
    text_after = ours_all[:, 0, chunked["input_ids"][0] != qwen25.model.config.video_token_id]
    assert int(text_after[0, -1]) > int(ours.max())  # text continues after the block


def test_mixed_chunk_sizes_keep_the_native_temporal_ids(qwen25):
    frames, query = clip(qwen25.grid)
    chunked, plans = qwen25.encode([Item(frames, [1.0, 1.0, 0.5, 0.5, 0.75, 0.75, 0.25, 0.25], query)])
    assert len(set(plans[0].sizes)) == 3  # 0.5 and 0.25 both reach the 56-px floor
    ours, _ = positions(qwen25, chunked, stock=False)
    per_chunk = [(h // 28) * (w // 28) for h, w in plans[0].sizes]
    temporal = torch.split(ours[0], per_chunk)
    anchor = int(ours[1].min())  # h ids restart at the block's anchor for each chunk
    interval = qwen25.model.config.vision_config.tokens_per_second * 2 / (8 / 4.0)
    assert [t.unique().tolist() for t in temporal] == [[anchor + int(k * interval)] for k in range(4)]


def test_batched_and_padded_positions_match_single(qwen25):
    frames, query = clip(qwen25.grid)
    a = Item(frames, [1.0] * 8, query)
    b = Item(frames[:4], [0.5] * 4, Query("Which?", ("x", "y"), "mcq", 2.0))
    single, _ = positions(qwen25, qwen25.encode([a])[0], stock=False)
    batch_inputs, _ = qwen25.encode([b, a])
    _, both = positions(qwen25, batch_inputs, stock=False)
    video = batch_inputs["input_ids"][1] == qwen25.model.config.video_token_id
    assert torch.equal(both[:, 1, video], single)


def test_qwen3_timestamps_are_the_original_frame_times(qwen3):
    times = [0.3, 0.8, 1.4, 1.9, 2.6, 3.1, 3.5, 3.9]  # decoded timestamps, not index / fps
    frames, query = clip(qwen3.grid, times=times)
    inputs, _ = qwen3.encode([Item(frames, [1.0] * 8, query)])
    text = qwen3.tokenizer.decode(inputs["input_ids"][0])
    printed = [float(x) for x in re.findall(r"<(\d+\.\d) seconds>", text)]
    assert printed == [round((times[2 * k] + times[2 * k + 1]) / 2, 1) for k in range(4)]
    frames, query = clip(qwen3.grid)  # no timestamps known: segment centres of the 4-s clip
    inputs, _ = qwen3.encode([Item(frames, [1.0] * 8, query)])
    printed = [float(x) for x in re.findall(r"<(\d+\.\d) seconds>", qwen3.tokenizer.decode(inputs["input_ids"][0]))]
    assert printed == [0.5, 1.5, 2.5, 3.5]
