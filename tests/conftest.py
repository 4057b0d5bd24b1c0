"""Shared fixtures: small real videos and manifests made inside the tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from resadapt.data.video import write_mp4

LONGEST = ("test_pipeline.py", "test_pipeline_qwen.py", "test_deployment.py")  # the whole DAG, 2-3 minutes each


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow end-to-end tests first, the whole-DAG runs first of all, so that pytest-xdist's workers (``-n``, which
    steal queued tests from each other: ``--dist worksteal``) start on them together instead of one worker finishing
    them alone at the end."""
    items.sort(key=lambda item: (item.get_closest_marker("slow") is None, item.path.name not in LONGEST))


LEVEL0, LEVEL_STEP = 16, 28  # grey levels far enough apart to survive H.264 and resizing


def _counting_frame(i: int, size: tuple[int, int]) -> np.ndarray:
    """Left half grey encodes i // 8, right half i % 8: up to 64 frames tell their index."""
    frame = np.empty((*size, 3), np.uint8)
    half = size[1] // 2
    frame[:, :half] = LEVEL0 + LEVEL_STEP * (i // 8)
    frame[:, half:] = LEVEL0 + LEVEL_STEP * (i % 8)
    return frame


def counting_clip(path: Path, n_frames: int, size: tuple[int, int] = (64, 96), fps: float = 10.0) -> Path:
    """An mp4 whose decoded frames tell their own index (see ``frame_index``)."""
    frames = [_counting_frame(i, size) for i in range(n_frames)]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mp4(path, frames, size, fps, crf=0)
    return path


def frame_index(frame: np.ndarray) -> int:
    w = frame.shape[1]
    left, right = frame[:, : w // 4].mean(), frame[:, 3 * w // 4 :].mean()
    return 8 * round((float(left) - LEVEL0) / LEVEL_STEP) + round((float(right) - LEVEL0) / LEVEL_STEP)


def write_manifest(path: Path, rows: list[dict | str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def mcq_row(sample_id: str, video: str, split: str = "train", **over) -> dict:
    row = {"id": sample_id, "video": video, "question": "Which digit is shown?", "options": ["1", "2", "3", "4"],
           "answer": "B", "task": "mcq", "split": split}
    row.update(over)
    return row


@pytest.fixture
def clip_factory(tmp_path):
    return lambda name, n=20, **kw: counting_clip(tmp_path / name, n, **kw)
