"""Video I/O: probe with PyAV, sample frames by presentation time, decode them with ffmpeg, encode mp4s with ffmpeg.

ffmpeg-python builds the commands; they run with the static binary that the pinned imageio-ffmpeg ships (never a
system ``ffmpeg``, whose version would change the bytes), or with ``RESADAPT_FFMPEG`` when set (then byte identity
with other machines is not promised). Every scaler runs with ``bitexact``/``accurate_rnd`` and one thread, so the same
input gives the same pixels on any CPU.

Real files differ from the ideal in three ways that the probe handles:

- rotation: a phone stores portrait video as landscape plus a display matrix; ffmpeg auto-rotates when decoding, so
  the probe reports the display size (sides swapped for ±90°) and frames are decoded to that;
- variable frame rate: a frame's time is its presentation timestamp, never index / average fps;
- edit lists: a trimmed mp4 declares more samples than it presents; the frames that decode are what count.
"""

from __future__ import annotations

import os
import statistics
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache
from pathlib import Path

import av
import ffmpeg
import numpy as np

# One thread and exact rounding in every swscale context: the SIMD fast paths differ between CPUs.
SWS_FLAGS = "accurate_rnd+bitexact+full_chroma_int"


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
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class VideoInfo:
    width: int  # display size: after the display matrix's rotation
    height: int
    fps: float  # average: frames / duration
    duration: float  # seconds, from the first frame's start to the last frame's end
    n_frames: int  # frames presented (after any edit list), and with ``probe(decode=True)`` all of them decode
    rotation: int = 0  # degrees of the display matrix (0, 90, 180, 270)
    vfr: bool = False  # frame intervals differ (variable frame rate)
    edit_list: bool = False  # the container declares more frames than it presents (an edit list trims them)
    pts: tuple[int, ...] = field(default=(), repr=False)  # presentation times in ``time_base`` units, first = 0
    end: int = 0  # the last frame's end in ``time_base`` units
    time_base: Fraction = Fraction(1)

    def as_dict(self) -> dict:
        """The scalar facts (no per-frame timestamps): what a report or a table column holds."""
        return {"width": self.width, "height": self.height, "fps": self.fps, "duration": self.duration,
                "n_frames": self.n_frames, "rotation": self.rotation, "vfr": self.vfr, "edit_list": self.edit_list}

    def timestamps(self, indices: Iterable[int]) -> list[float]:
        """Presentation time in seconds of each frame in ``indices``."""
        return [round(float(self.pts[i] * self.time_base), 6) for i in indices]


def _rotation(frame: av.VideoFrame) -> int:
    return int(round(frame.rotation)) % 360 if frame.rotation else 0


def _frames_end(pts: list[int], last_duration: int) -> int:
    """The last frame's end: its own duration where the container has one, else the typical interval."""
    if last_duration:
        return pts[-1] + last_duration
    gaps = [b - a for a, b in zip(pts, pts[1:], strict=False) if b > a]
    return pts[-1] + (int(statistics.median(gaps)) if gaps else 1)


def probe(path: str | Path, decode: bool = True) -> VideoInfo:
    """Read ``path``'s frames' timestamps (demuxing every packet) and, with ``decode``, decode every frame (the only
    honest "it decodes"). Without ``decode`` only the first frame is decoded (for the display matrix)."""
    path = Path(path)
    if not path.exists():
        raise VideoError(path, "file not found")
    if not path.is_file():
        raise VideoError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise VideoError(path, "empty file (0 bytes)")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise VideoError(path, f"not a readable video ({getattr(exc, 'strerror', None) or exc})") from None
    pts: list[int] = []
    last_pts, last_duration = None, 0  # of the frame shown last (packets come in decoding order)
    n_decoded, rotation = 0, None
    with container:
        if not container.streams.video:
            raise VideoError(path, "no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        declared = stream.frames
        time_base = stream.time_base or Fraction(1, 1_000_000)
        try:
            for packet in container.demux(stream):
                if packet.size and not packet.is_discard:
                    stamp = packet.pts if packet.pts is not None else packet.dts
                    if stamp is None:
                        raise VideoError(path, f"frame {len(pts)} has no timestamp")
                    pts.append(stamp)
                    if last_pts is None or stamp >= last_pts:
                        last_pts, last_duration = stamp, packet.duration or 0
                if decode or rotation is None:
                    for frame in packet.decode():
                        n_decoded += 1
                        if rotation is None:
                            rotation = _rotation(frame)
        except av.error.FFmpegError as exc:
            what = f"decoding failed after {n_decoded}" if decode else f"reading failed after {len(pts)}"
            raise VideoError(path, f"{what} frame(s) ({exc.strerror or exc})") from None
        declared_duration = stream.duration * time_base if stream.duration else None
        codec = stream.codec_context
        coded = (codec.width, codec.height)
    if not pts or (decode and n_decoded == 0):
        raise VideoError(path, "no frame decodes")
    pts.sort()
    start = pts[0]
    end = _frames_end(pts, last_duration) - start
    pts = [p - start for p in pts]
    gaps = sorted(b - a for a, b in zip(pts, pts[1:], strict=False))
    interval = gaps[len(gaps) // 2] if gaps else end
    slack = 2 * interval * time_base + (declared_duration or 0) / 100  # rounding of the last frames, not data
    if declared_duration is not None and declared_duration - end * time_base > slack:
        raise VideoError(path, f"truncated: frames cover {float(end * time_base):.3f} s of the "
                               f"{float(declared_duration):.3f} s the stream declares")
    if decode and n_decoded < len(pts):
        raise VideoError(path, f"damaged: only {n_decoded} of {len(pts)} frames decode")
    rotation = rotation or 0
    width, height = coded[::-1] if rotation % 180 == 90 else coded
    duration = float(end * time_base)
    return VideoInfo(
        width=width, height=height, fps=len(pts) / duration if duration else 0.0, duration=duration,
        n_frames=len(pts), rotation=rotation, vfr=bool(gaps) and gaps[-1] - gaps[0] > 1 + interval // 50,
        edit_list=bool(declared) and declared > len(pts), pts=tuple(pts), end=end,
        time_base=time_base,
    )


def sample_indices(info: VideoInfo, n: int) -> list[int]:
    """The frames shown at the centres of ``n`` equal time segments of the video: for t_i = (i + ½)·D / n, the last
    frame whose presentation time is ≤ t_i (exact rational arithmetic; for constant frame rate this is frame
    ⌊(i + ½)·N / n⌋)."""
    if info.n_frames < n:
        raise ValueError(f"the video has {info.n_frames} frame(s), fewer than the {n} to sample")
    return [max(0, bisect_right(info.pts, Fraction((2 * i + 1) * info.end, 2 * n)) - 1) for i in range(n)]


def decode_frames(path: str | Path, indices: list[int], size: tuple[int, int]) -> np.ndarray:
    """Decode the frames at ``indices`` (presentation order, display orientation) resized (bicubic) to ``size`` =
    (height, width) → uint8 [n, H, W, 3].

    One ffmpeg process streams the video once and keeps only the selected frames, so a long video never sits in
    memory.
    """
    height, width = size
    select = "+".join(f"eq(n,{i})" for i in sorted(set(indices)))
    stream = (
        ffmpeg.input(str(path))
        .filter("select", select)
        .filter("scale", width, height, flags=f"bicubic+{SWS_FLAGS}")
        .filter("format", "rgb24")
        .output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough")
        .global_args("-filter_threads", "1")
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
    """Encode uint8 RGB frames [H, W, 3] to H.264 mp4, byte-identical for the same input on any machine (the bundled
    ffmpeg, one thread everywhere, a bit-exact RGB → YUV conversion, no version tags)."""
    height, width = size
    proc = (
        ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}", r=fps)
        .filter("scale", flags=f"bicubic+{SWS_FLAGS}")
        .filter("format", "yuv420p")
        .output(
            str(path), format="mp4", vcodec="libx264", pix_fmt="yuv420p", crf=crf, preset="veryfast", threads=1,
            map_metadata=-1, fflags="+bitexact", **{"flags:v": "+bitexact"},
        )
        .global_args("-filter_threads", "1")
        .overwrite_output()
        .run_async(cmd=ffmpeg_exe(), pipe_stdin=True, pipe_stderr=True, quiet=True)
    )
    _, err = proc.communicate(input=b"".join(np.ascontiguousarray(f, dtype=np.uint8).tobytes() for f in frames))
    if proc.returncode != 0:
        raise VideoError(path, f"ffmpeg could not encode it: {err.decode('utf-8', 'replace').strip()[-300:]}")
