"""The built-in "needle frame" video-QA set, rendered to real H.264 mp4s.

Every frame has a border of its own colour (visible at any resolution) and one small glyph (a digit, or a patch of
fine stripes) at a random place on a background that changes from frame to frame. A question names a border colour,
so answering needs full resolution on one frame only: the situation a resolution allocator is for.

Per split, ``synth.looks`` changes what no question asks about (background greys, border width, colour shades,
frame size, phrasing: the ``test`` split), and ``synth.long`` renders long videos in which the queried colour is
shown for only a frame or two (``eval_long``: more frames can gain).
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from resadapt.config import LongParams, LookParams, SynthParams
from resadapt.data.manifest import Sample, option_letter, sample_row
from resadapt.data.video import write_mp4
from resadapt.io import atomic_path, write_jsonl

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (230, 25, 75), "green": (60, 180, 75), "yellow": (255, 225, 25), "blue": (0, 130, 200),
    "orange": (245, 130, 48), "purple": (145, 30, 180), "cyan": (70, 240, 240), "magenta": (240, 50, 230),
    "lime": (210, 245, 60), "pink": (250, 190, 212), "teal": (0, 128, 128), "lavender": (220, 190, 255),
    "brown": (170, 110, 40), "beige": (255, 250, 200), "maroon": (128, 0, 0), "navy": (0, 0, 128),
}
STRIPES = ("horizontal", "vertical", "diagonal-up", "diagonal-down")
PLAIN = LookParams()


@dataclass(frozen=True)
class FrameLabel:
    colour: str
    glyph: str
    box: tuple[int, int, int, int]  # x, y, width, height of the glyph in pixels


@cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


# (cos θ, sin θ) · 1024 rounded to integers for 256 directions θ: computed once; no value lies near a rounding
# boundary (tests/data/test_synth.py), so every libm gives the same table and no transcendental enters the pixels
N_DIRECTIONS = 256
DIRECTIONS = tuple((round(1024 * math.cos(2 * math.pi * k / N_DIRECTIONS)),
                    round(1024 * math.sin(2 * math.pi * k / N_DIRECTIONS))) for k in range(N_DIRECTIONS))


def _background(rng: np.random.Generator, side: int, grey: tuple[int, int] = PLAIN.background) -> np.ndarray:
    """A smooth grey gradient in a random direction: new for each frame, never confusable with a glyph.

    grey(x, y) = lo + (hi − lo) · ramp with ramp = (cos θ·x/side + sin θ·y/side + 1.5) / 3, evaluated in integers
    (lo, hi in 1/256 steps, θ on a 256-step circle, floor division), so the pixels are the same on every machine."""
    lo, hi = (int(v * 256) for v in rng.uniform(*grey, size=2))
    a, b = DIRECTIONS[int(rng.uniform(0, 2 * np.pi) / (2 * np.pi) * N_DIRECTIONS) % N_DIRECTIONS]
    y, x = np.mgrid[0:side, 0:side].astype(np.int64)
    numerator = a * x + b * y + 1536 * side  # (cos θ·x + sin θ·y + 1.5·side) · 1024: in [~96, ~2976] · side
    grey = ((lo + (hi - lo) * numerator // (3072 * side)) // 256).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def _stripe_patch(kind: str, side: int) -> np.ndarray:
    """A ``side``² mask of period-3 stripes: readable at full resolution, grey mush once downscaled."""
    y, x = np.mgrid[0:side, 0:side]
    phase = {"horizontal": y, "vertical": x, "diagonal-up": x + y, "diagonal-down": x - y}[kind]
    return (phase % 3 == 0)


def render_frame(rng: np.random.Generator, side: int, colour: str, glyph_kind: str, glyph_size: int,
                 look: LookParams = PLAIN, rgb: tuple[int, int, int] | None = None) -> tuple[np.ndarray, FrameLabel]:
    """One frame: ``look``'s background and border width, the border in ``rgb`` (default: the palette's colour)."""
    frame = _background(rng, side, look.background)
    border = max(2, round(side * look.border_fraction))
    frame[:border], frame[-border:], frame[:, :border], frame[:, -border:] = (rgb or PALETTE[colour],) * 4
    ink = int(rng.uniform(10, 45))
    if glyph_kind == "digits":
        glyph = str(int(rng.integers(10)))
        probe = ImageDraw.Draw(Image.new("L", (1, 1)))
        left, top, right, bottom = probe.textbbox((0, 0), glyph, font=_font(glyph_size))
        w, h = right - left, bottom - top
    else:
        glyph = STRIPES[int(rng.integers(len(STRIPES)))]
        w = h = glyph_size
    margin = border + 2
    x = int(rng.integers(margin, side - margin - w))
    y = int(rng.integers(margin, side - margin - h))
    if glyph_kind == "digits":
        image = Image.fromarray(frame)
        ImageDraw.Draw(image).text((x - left, y - top), glyph, font=_font(glyph_size), fill=(ink, ink, ink))
        frame = np.asarray(image).copy()
    else:
        frame[y : y + h, x : x + w][_stripe_patch(glyph, glyph_size)] = ink
    return frame, FrameLabel(colour=colour, glyph=glyph, box=(x, y, w, h))


def make_question(rng: np.random.Generator, frames: list[dict], target: int, task: str, glyph_kind: str,
                  fps: float) -> tuple[str, list[str], str, tuple[float, float] | None]:
    """(question, options, answer, span) about frame ``target``; ``frames`` hold each frame's colour and glyph."""
    colour = frames[target]["colour"]
    if task == "grounding":
        start, end = target / fps, (target + 1) / fps
        question = f"When does the frame with the {colour} border appear? Answer with [start, end] in seconds."
        return question, [], f"[{start:.2f}, {end:.2f}]", (start, end)
    answer = frames[target]["glyph"]
    if glyph_kind == "digits":
        # Distractors come from the other frames first, so a reader that looks at the wrong frame is caught.
        others = list(dict.fromkeys(f["glyph"] for f in frames if f["glyph"] != answer))
        rng.shuffle(others)
        pool = others + [d for d in map(str, rng.permutation(10)) if d != answer and d not in others]
        choices = [answer, *pool[:3]]
        noun = "digit"
    else:
        choices = list(STRIPES)
        noun = "stripe orientation"
    order = rng.permutation(len(choices))
    options = [choices[i] for i in order]
    letter = option_letter(options.index(answer))
    return f"Which {noun} is shown in the frame with the {colour} border?", options, letter, None


def shaded(rng: np.random.Generator, colour: str, shade: int) -> tuple[int, int, int]:
    """The palette colour shifted by up to ± ``shade`` per channel (the palette's own colour when shade is 0)."""
    if not shade:
        return PALETTE[colour]
    shift = rng.integers(-shade, shade + 1, size=3)
    return tuple(int(v) for v in np.clip(np.array(PALETTE[colour]) + shift, 0, 255))


REPHRASE = ((re.compile(r"^Which (.+) is shown in the frame with the (\w+) border\?$"),
             r"Look at the frame bordered in \2: what \1 does it show?"),
            (re.compile(r"^When does the frame with the (\w+) border appear\?"), r"At what time is the \1-bordered "
             r"frame on screen?"))


def rephrase(question: str) -> str:
    """The ``alt`` phrasing of a question: other words, the same colour and the same answer format."""
    for pattern, alt in REPHRASE:
        if pattern.search(question):
            return pattern.sub(alt, question)
    raise ValueError(f"no alternative phrasing for {question!r}")


def brief_runs(rng: np.random.Generator, n_colours: int, target: int, long: LongParams) -> list[int]:
    """Frames per colour in a long video: the target colour ``long.brief`` frames, the others share the rest
    (the leftover frames go to random colours, so where the brief run starts is not aligned with any sampler)."""
    brief = int(rng.integers(long.brief[0], long.brief[1] + 1))
    rest = long.frames - brief
    runs = np.full(n_colours, rest // (n_colours - 1))
    others = [i for i in range(n_colours) if i != target]
    runs[rng.choice(others, size=rest % (n_colours - 1), replace=False)] += 1
    runs[target] = brief
    return runs.tolist()


def render_sample(params: SynthParams, split: str, index: int, out_dir: Path) -> Sample:
    """Render one video to ``out_dir/videos/<id>.mp4`` and return its manifest row (deterministic per seed, split
    name and index: adding or resizing another split changes nothing here)."""
    rng = np.random.default_rng([params.seed, zlib.crc32(split.encode()), index])
    look, long = params.looks.get(split, PLAIN), params.long.get(split)
    side = look.frame_side or params.frame_side
    colours = [str(c) for c in rng.choice(list(PALETTE), size=params.n_frames, replace=False)]
    rendered = [render_frame(rng, side, c, params.glyph, params.glyph_size, look, shaded(rng, c, look.shade))
                for c in colours]
    frames, labels = [f for f, _ in rendered], [lab for _, lab in rendered]
    target = int(rng.integers(params.n_frames))
    task = "grounding" if rng.random() < params.grounding_fraction and long is None else "mcq"
    colours_meta = [{"colour": lab.colour, "glyph": lab.glyph, "box": list(lab.box)} for lab in labels]
    hold = params.hold.get(split, 1)
    runs = brief_runs(rng, params.n_frames, target, long) if long else [hold] * params.n_frames
    speed = sum(runs) / params.n_frames  # more frames in the same duration
    question, options, answer, span = make_question(rng, colours_meta, target, task, params.glyph, params.fps)
    if look.phrasing == "alt":
        question = rephrase(question)
    sample_id = f"{split}-{index:05d}"
    video = out_dir / "videos" / f"{sample_id}.mp4"
    with atomic_path(video) as tmp:
        write_mp4(tmp, [f for f, n in zip(frames, runs, strict=True) for _ in range(n)], (side, side),
                  params.fps * speed, params.crf)
    # labels per video frame; the queried frame is the middle of its colour's run
    frames_meta = [m for m, n in zip(colours_meta, runs, strict=True) for _ in range(n)]
    start = sum(runs[:target])
    meta = {"target_frame": start + runs[target] // 2, "glyph_kind": params.glyph, "frames": frames_meta,
            "hold": hold, "runs": runs}
    return Sample(
        id=sample_id, video=f"videos/{sample_id}.mp4", question=question, options=options, answer=answer,
        task=task, span=span, split=split, meta=meta,
    )


def _jobs(params: SynthParams) -> Iterator[tuple[str, int]]:
    for split, count in sorted(params.splits.items()):
        for index in range(count):
            yield split, index


def build_dataset(params: SynthParams, progress: bool = True) -> Path:
    """Render every split into ``params.out_dir`` and write its ``manifest.jsonl``; returns the manifest path."""
    out_dir = Path(params.out_dir)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    jobs = list(_jobs(params))
    with ThreadPoolExecutor(params.n_workers) as pool:
        results = pool.map(lambda job: render_sample(params, *job, out_dir), jobs)
        samples = list(tqdm(results, total=len(jobs), desc="synth", unit="video", disable=not progress))
    manifest = out_dir / "manifest.jsonl"
    write_jsonl(manifest, (sample_row(s) for s in samples))
    return manifest
