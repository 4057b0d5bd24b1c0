"""vLLM cannot run here (no GPU; it pins its own torch): request building is tested, and the clear errors."""

import pytest
import torch

from resadapt.backbone.interface import Item, Query
from resadapt.backbone.tiny_qwen import build
from resadapt.backbone.vllm_engine import EngineUnavailable, VLLMBackbone, build_requests


def test_requests_carry_one_video_per_chunk_at_its_planned_size(tmp_path):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(build("qwen2_5_vl", tmp_path))
    frames = torch.randint(0, 256, (5, 224, 224, 3), dtype=torch.uint8)
    items = [Item(frames, [1.0, 1.0, 0.2, 0.2, 0.5], Query("Which stripe?", ("a", "b"), "mcq", 2.5))]
    requests, plans = build_requests(items, processor)
    videos = requests[0]["multi_modal_data"]["video"]
    assert [v[0].shape for v in videos] == [(2, 224, 224, 3), (2, 56, 56, 3), (2, 112, 112, 3)]
    # original frame times in ms at fps 1000 (index / fps = time); a short last chunk repeats its frame
    assert [v[1]["frames_indices"] for v in videos] == [[250, 750], [1250, 1750], [2250, 2250]]
    assert all(v[1]["fps"] == 1000.0 for v in videos)
    assert requests[0]["prompt"].count("<|video_pad|>") == 3 == len(plans[0].chunks)
    assert requests[0]["prompt"].count("<|vision_start|>") == 1  # one vision block holds every chunk (spec §3.4)
    assert "A. a" in requests[0]["prompt"] and requests[0]["mm_processor_kwargs"]["do_resize"] is False


def test_missing_vllm_or_gpu_is_a_clear_error():
    with pytest.raises(EngineUnavailable, match="vllm"):
        VLLMBackbone("some/checkpoint")
