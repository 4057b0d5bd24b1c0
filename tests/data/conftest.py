"""Real-world encodes made with the bundled ffmpeg inside the tests: rotated, variable-frame-rate, trimmed with an
edit list, other bit depths, chroma layouts and containers. Each is derived from a counting clip, so every decoded
frame still tells which source frame it is (``tests.conftest.frame_index``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from resadapt.data.video import ffmpeg_exe, write_mp4
from tests.conftest import _counting_frame, counting_clip


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *args], check=True, capture_output=True)


def rotated_clip(path: Path, upright: Path, n_frames: int) -> Path:
    """A phone-style clip: the upright frames (portrait, 96 × 64) stored turned on their side (64 × 96) with a display
    matrix that turns them back, as phones record portrait video."""
    coded = path.with_suffix(".coded.mp4")
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [np.rot90(_counting_frame(i, (96, 64)), k=-1) for i in range(n_frames)]  # 90° clockwise: [64, 96, 3]
    write_mp4(coded, frames, (64, 96), 10.0, crf=0)
    counting_clip(upright, n_frames, size=(96, 64))
    ffmpeg("-display_rotation", "90", "-i", str(coded), "-c", "copy", str(path))
    coded.unlink()
    return path


def vfr_clip(path: Path, n_frames: int = 30) -> Path:
    """Frames 0-9 at 10 fps, then every frame held 0.3 s: a variable frame rate, as phones and screen recorders
    write."""
    source = counting_clip(path.with_suffix(".cfr.mp4"), n_frames)
    ffmpeg("-i", str(source), "-vf", "setpts='if(lt(N,10),N*0.1,1+(N-10)*0.3)/TB'", "-fps_mode", "passthrough",
           "-c:v", "libx264", "-crf", "0", "-threads", "1", str(path))
    source.unlink()
    return path


def trimmed_clip(path: Path, n_frames: int = 40, start: float = 1.05) -> Path:
    """The counting clip trimmed by a stream copy from ``start`` s: the mp4 keeps every sample from the previous
    keyframe on and an edit list hides the ones before ``start``."""
    source = counting_clip(path.with_suffix(".full.mp4"), n_frames)
    ffmpeg("-ss", str(start), "-i", str(source), "-c", "copy", str(path))
    source.unlink()
    return path


def reencoded_clip(path: Path, n_frames: int, *codec_args: str) -> Path:
    """The counting clip re-encoded (a container from the suffix, a codec and pixel format from ``codec_args``)."""
    source = counting_clip(path.with_suffix(".src.mp4"), n_frames)
    ffmpeg("-i", str(source), *codec_args, "-threads", "1", str(path))
    source.unlink()
    return path


def long_clip(path: Path, seconds: int, fps: int = 2, side: int = 32) -> Path:
    """A long low-resolution clip (ffmpeg's test pattern): cheap to make, as long as a real recording."""
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={side}x{side}:rate={fps}:duration={seconds}", "-c:v", "libx264",
           "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-threads", "1", str(path))
    return path
