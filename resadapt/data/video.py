"""Video I/O: probe with PyAV, sample frames uniformly, decode them with ffmpeg, encode mp4s with ffmpeg.

ffmpeg-python builds the commands; they run with the system ``ffmpeg`` if there is one, else with the static binary
that imageio-ffmpeg ships (so no system package is needed). ``RESADAPT_FFMPEG`` overrides both.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import av
import ffmpeg
import numpy as np


class VideoError(Exception):
    """A video that cannot be used; the message names the file and what is wrong."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@cache
def ffmpeg_exe() -> str:
    override = os.environ.get("RESADAPT_FFMPEG")
    if override:
        return override
    system = shutil.which("ffmpeg")
    if system:
        return system
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    duration: float  # seconds
    n_frames: int  # frames that actually decode (equals the declared count unless the file is damaged)

    def as_dict(self) -> dict:
        return asdict(self)


def probe(path: str | Path, decode: bool = True) -> VideoInfo:
    """Open ``path`` with PyAV and, with ``decode``, decode every frame (the only honest "it decodes").

    Without ``decode`` the frame count is the container's declared one; frames are decoded only when it has none.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoError(path, "file not found")
    if path.stat().st_size == 0:
        raise VideoError(path, "empty file (0 bytes)")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise VideoError(path, f"not a readable video ({exc.strerror or exc})") from None
    with container:
        if not container.streams.video:
            raise VideoError(path, "no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        declared = stream.frames
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        n_decoded = 0 if decode or not declared else declared
        try:
            for _ in container.decode(stream) if decode or not declared else ():
                n_decoded += 1
        except av.error.FFmpegError as exc:
            raise VideoError(path, f"decoding failed after {n_decoded} frame(s) ({exc.strerror or exc})") from None
        width, height = stream.codec_context.width, stream.codec_context.height
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1e6
        else:
            duration = n_decoded / fps if fps else 0.0
    if n_decoded == 0:
        raise VideoError(path, "no frame decodes")
    if declared and n_decoded < declared:
        raise VideoError(path, f"truncated: only {n_decoded} of {declared} declared frames decode")
    return VideoInfo(width=width, height=height, fps=fps, duration=duration, n_frames=n_decoded)


def sample_indices(n_total: int, n: int) -> list[int]:
    """Frame indices at the centres of ``n`` equal segments of a ``n_total``-frame video."""
    if n_total < n:
        raise ValueError(f"the video has {n_total} frame(s), fewer than the {n} to sample")
    return [math.floor((i + 0.5) * n_total / n) for i in range(n)]


def decode_frames(path: str | Path, indices: list[int], size: tuple[int, int]) -> np.ndarray:
    """Decode the frames at ``indices`` resized (bicubic) to ``size`` = (height, width) → uint8 [n, H, W, 3].

    One ffmpeg process streams the video once and keeps only the selected frames, so a long video never sits in
    memory.
    """
    height, width = size
    select = "+".join(f"eq(n,{i})" for i in sorted(set(indices)))
    stream = (
        ffmpeg.input(str(path))
        .filter("select", select)
        .filter("scale", width, height, flags="bicubic")
        .output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough")
    )
    try:
        out, _ = stream.run(cmd=ffmpeg_exe(), capture_stdout=True, capture_stderr=True, quiet=True)
    except ffmpeg.Error as exc:
        tail = exc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] if exc.stderr else []
        raise VideoError(path, f"ffmpeg could not decode it ({' '.join(tail) or 'no message'})") from None
    frame_bytes = height * width * 3
    got = len(out) // frame_bytes
    unique = sorted(set(indices))
    if got != len(unique):
        raise VideoError(path, f"decoded {got} of {len(unique)} sampled frames")
    frames = np.frombuffer(out, np.uint8).reshape(got, height, width, 3)
    position = {idx: k for k, idx in enumerate(unique)}
    return frames[[position[i] for i in indices]]


def write_mp4(path: str | Path, frames: Iterable[np.ndarray], size: tuple[int, int], fps: float, crf: int) -> None:
    """Encode uint8 RGB frames [H, W, 3] to H.264 mp4, bit-exact for the same input (one thread, no version tags)."""
    height, width = size
    proc = (
        ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}", r=fps)
        .output(
            str(path), format="mp4", vcodec="libx264", pix_fmt="yuv420p", crf=crf, preset="veryfast", threads=1,
            map_metadata=-1, fflags="+bitexact", **{"flags:v": "+bitexact"},
        )
        .overwrite_output()
        .run_async(cmd=ffmpeg_exe(), pipe_stdin=True, pipe_stderr=True, quiet=True)
    )
    _, err = proc.communicate(input=b"".join(np.ascontiguousarray(f, dtype=np.uint8).tobytes() for f in frames))
    if proc.returncode != 0:
        raise VideoError(path, f"ffmpeg could not encode it: {err.decode('utf-8', 'replace').strip()[-300:]}")
