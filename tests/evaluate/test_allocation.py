import math

import torch

from resadapt.data.sample import Video
from resadapt.evaluate.allocation import allocation_stats


def video(key, colours, needs, needed, task="mcq", kind="which"):
    frames = [{"colour": c, "glyph": "vertical", "box": [0, 0, 1, 1], "need": n} for c, n in zip(colours, needs,
                                                                                                strict=True)]
    meta = {"frame_indices": list(range(len(colours))), "task": task,
            "meta": {"frames": frames, "needed_frames": needed, "target_frame": needed[0], "question_kind": kind}}
    return Video(key, torch.zeros(len(colours), 28, 28, 3, dtype=torch.uint8), meta)


def test_needed_and_other_scales_ratio_and_correlation_with_need():
    videos = [video("a", ["red", "blue", "green", "red"], [0.4, 0.9, 0.5, 0.6], [0]),  # red shown twice: both needed
              video("b", ["red", "blue", "green", "teal"], [0.4, 0.9, 0.5, 0.6], [1, 2])]
    scales = [torch.tensor([0.4, 0.1, 0.1, 0.6]), torch.tensor([0.1, 0.9, 0.5, 0.1])]
    stats = allocation_stats(scales, videos)
    assert math.isclose(stats["needed_scale"], (0.4 + 0.6 + 0.9 + 0.5) / 4, rel_tol=1e-6)
    assert math.isclose(stats["other_scale"], 0.1, rel_tol=1e-6) and math.isclose(stats["ratio"], 6.0, rel_tol=1e-6)
    assert stats["n_needed_frames"] == 4 and math.isclose(stats["corr_need"], 1.0)  # every needed frame at its need


def test_the_glyph_reading_questions_and_each_kind_are_measured_apart():
    videos = [video("a", ["red", "blue"], [0.4, 0.9], [0]), video("b", ["red", "blue"], [0.4, 0.9], [1]),
              video("d", ["red", "blue"], [0.6, 0.9], [0]),
              video("c", ["red", "blue"], [0.5, 0.9], [1], task="grounding", kind="when")]
    scales = [torch.tensor([0.4, 0.1]), torch.tensor([0.1, 0.9]), torch.tensor([0.6, 0.1]),
              torch.tensor([0.1, 0.1])]  # grounding: borders only, so its needed frame rightly stays at the floor
    stats = allocation_stats(scales, videos)
    assert math.isclose(stats["mcq"]["corr_need"], 1.0) and stats["mcq"]["n_needed_frames"] == 3
    assert stats["corr_need"] < 0.9  # the grounding frame at the floor despite its glyph's 0.9 dilutes the pooled one
    assert set(stats["kinds"]) == {"which", "when"} and stats["kinds"]["when"]["n_needed_frames"] == 1
    assert math.isclose(stats["kinds"]["which"]["needed_scale"], (0.4 + 0.9 + 0.6) / 3, rel_tol=1e-6)
    flat = allocation_stats([torch.tensor([0.5, 0.1]), torch.tensor([0.1, 0.5]), torch.tensor([0.5, 0.1])], videos[:3])
    assert flat["corr_need"] is None  # every needed frame at one scale: undefined, never a NaN in metrics.json


def test_videos_without_labels_give_nothing():
    plain = Video("x", torch.zeros(2, 28, 28, 3, dtype=torch.uint8), {"frame_indices": [0, 1], "meta": {}})
    assert allocation_stats([torch.tensor([1.0, 0.1])], [plain]) == {}
