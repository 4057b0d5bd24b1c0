"""The built-in "needle frame" video-QA set, rendered to real H.264 mp4s.

Every frame has a border of its own colour (visible at any resolution) and one small glyph (a digit, or a patch of
stripes) at a random place on a background that changes from frame to frame. A question names one to three border
colours, so answering needs resolution on those frames only: the situation a resolution allocator is for.

Graded need (stripes): each frame's glyph has its own need n ∈ ``need_range``, drawn around a per-video centre. Its
stripes have period p = 3/n px (dark for a third of each period) on a patch of side glyph_size/n px, so the glyph at
scale s looks like the need-1 glyph (period 3, side glyph_size) at scale s/n: whether it can be read depends on s/n
alone, and it can be while the resized stripes keep a period of at least 3 px, i.e. for s ≥ n. The need is recorded
per frame (``meta.frames[i].need``) for the evaluation; nothing a model is given reads it.

Question kinds: ``which`` (the glyph in one frame), ``same`` (do two frames show the same glyph? yes/no), ``count``
(how many of three frames show a given glyph class? 0–3), ``when`` (one frame's time span) and ``between`` (the span
from one colour's frame to another's). ``meta.needed_frames`` lists the frames a question is about.

Per split, ``synth.looks`` changes what no question asks about (background greys, border width, colour shades,
frame size, phrasing: the ``test`` split), and ``synth.long`` renders long videos in which the colours a question
names are shown for only a frame or two (``eval_long``: more frames can gain).
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
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
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")  # the model reads words
MCQ_KINDS = ("which", "same", "count")
GROUNDING_KINDS = ("when", "between")
COUNTED = 3  # frames a count question names
PLAIN = LookParams()


@dataclass(frozen=True)
class FrameLabel:
    colour: str
    glyph: str
    box: tuple[int, int, int, int]  # x, y, width, height of the glyph in pixels
    need: float | None = None  # stripes: the scale the glyph needs to be read (3 / period)

    def meta(self) -> dict:
        return {"colour": self.colour, "glyph": self.glyph, "box": list(self.box)} | (
            {} if self.need is None else {"need": self.need})


@dataclass(frozen=True)
class Question:
    question: str
    options: list[str]
    answer: str  # an option's letter, or "[start, end]"
    span: tuple[float, float] | None
    needed: list[int]  # the frames (indices into the labels asked about) the question is about
    kind: str
    counted: str | None = None  # count: the glyph class counted


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


def quantised_need(need: float) -> float:
    """The need of the stripe period nearest 3/need px on the eighth-pixel grid: n = 3/p = 24/round(24/need)."""
    return 24 / round(24 / need)


def _stripe_patch(kind: str, side: int, need: float = 1.0) -> np.ndarray:
    """[side, side] ink coverage in sixteenths (0–16) of stripes of period p = 3/need px measured across the
    stripes (diagonals too), dark for the first third of each period, sampled 4×4 per pixel. Integer arithmetic in
    eighth pixels: a sub-sample at 8·x + 1, 3, 5 or 7 is dark where 8·phase mod P < P/3, with P = 8p (×√2 for the
    diagonals, whose phase x ± y advances √2 per pixel across them). At period 3, horizontal and vertical stripes
    cover whole rows (columns): phase mod 3 = 0."""
    sub = 2 * np.arange(4) + 1
    y = (8 * np.arange(side)[:, None] + sub[None]).reshape(-1)[:, None]  # [4·side, 1] in eighth pixels
    x = y.T
    phase = {"horizontal": y + 0 * x, "vertical": x + 0 * y, "diagonal-up": x + y, "diagonal-down": x - y}[kind]
    eighths = round(24 / need)  # 8p
    period = eighths if kind in ("horizontal", "vertical") else round(eighths * math.sqrt(2))
    dark = (phase % period) * 3 < period  # [4·side, 4·side]
    return dark.reshape(side, 4, side, 4).sum((1, 3))


def draw_needs(rng: np.random.Generator, n: int, lo: float, hi: float, spread: float) -> list[float]:
    """Per-frame needs: a centre c ~ U[lo, hi] per video, each frame's need ~ U[max(lo, c − spread), min(hi, c +
    spread)], on the eighth-pixel period grid (``quantised_need``)."""
    centre = rng.uniform(lo, hi)
    return [quantised_need(float(v)) for v in rng.uniform(max(lo, centre - spread), min(hi, centre + spread), n)]


def render_frame(rng: np.random.Generator, side: int, colour: str, glyph_kind: str, glyph_size: int,
                 need: float | None = None, look: LookParams = PLAIN, rgb: tuple[int, int, int] | None = None
                 ) -> tuple[np.ndarray, FrameLabel]:
    """One frame; ``need`` (stripes only) grades the glyph: period 3/need px on a patch of side glyph_size/need px
    (None: period 3 on glyph_size px, recorded as need 1). ``look``: background greys and border width; ``rgb``:
    the border's colour (default: the palette's)."""
    frame = _background(rng, side, look.background)
    border = max(2, round(side * look.border_fraction))
    frame[:border], frame[-border:], frame[:, :border], frame[:, -border:] = (rgb or PALETTE[colour],) * 4
    ink = int(rng.uniform(10, 45))
    if glyph_kind == "digits":
        if need is not None:
            raise ValueError("a graded need is defined for stripes only (a digit's legibility has no known scale)")
        glyph = str(int(rng.integers(10)))
        probe = ImageDraw.Draw(Image.new("L", (1, 1)))
        left, top, right, bottom = probe.textbbox((0, 0), glyph, font=_font(glyph_size))
        w, h = right - left, bottom - top
    else:
        glyph = STRIPES[int(rng.integers(len(STRIPES)))]
        need = 1.0 if need is None else quantised_need(need)
        w = h = round(glyph_size / need)
    margin = border + 2
    x = int(rng.integers(margin, side - margin - w))
    y = int(rng.integers(margin, side - margin - h))
    if glyph_kind == "digits":
        image = Image.fromarray(frame)
        ImageDraw.Draw(image).text((x - left, y - top), glyph, font=_font(glyph_size), fill=(ink, ink, ink))
        frame = np.asarray(image).copy()
    else:
        patch = frame[y : y + h, x : x + w].astype(np.int64)
        frame[y : y + h, x : x + w] = patch - (patch - ink) * _stripe_patch(glyph, w, need)[..., None] // 16
    return frame, FrameLabel(colour=colour, glyph=glyph, box=(x, y, w, h), need=need)


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


def _lettered(rng: np.random.Generator, choices: list[str], answer: str, shuffle: bool = True) -> tuple[list[str], str]:
    options = [choices[i] for i in rng.permutation(len(choices))] if shuffle else choices
    return options, option_letter(options.index(answer))


def _noun(glyph_kind: str) -> str:
    return "digit" if glyph_kind == "digits" else "stripe orientation"


def _showing(glyph: str, glyph_kind: str) -> str:
    return f"the digit {DIGIT_WORDS[int(glyph)]}" if glyph_kind == "digits" else f"{glyph} stripes"


def _listed(colours: list[str]) -> str:
    return ", ".join(colours[:-1]) + f" and {colours[-1]}" if len(colours) > 1 else colours[0]


def ask_same(rng: np.random.Generator, frames: list[dict], glyph_kind: str) -> Question:
    """Do two frames show the same glyph? "yes" for half the questions where the frames allow it."""
    a = int(rng.integers(len(frames)))
    want_same = bool(rng.random() < 0.5)
    pool = [t for t in range(len(frames)) if t != a and (frames[t]["glyph"] == frames[a]["glyph"]) == want_same]
    pool = pool or [t for t in range(len(frames)) if t != a]
    b = int(rng.choice(pool))
    same = frames[a]["glyph"] == frames[b]["glyph"]
    options, letter = _lettered(rng, ["yes", "no"], "yes" if same else "no")
    question = (f"Do the frames with the {frames[a]['colour']} and the {frames[b]['colour']} border show the same "
                f"{_noun(glyph_kind)}?")
    return Question(question, options, letter, None, [a, b], "same")


def ask_count(rng: np.random.Generator, frames: list[dict], glyph_kind: str, classes: Sequence[str]) -> Question:
    """How many of k = min(3, T) named frames show glyph class o? The count c is drawn uniformly from 0..k, then o
    among the classes with at least c frames showing it and k − c not (c lowered until some class allows it)."""
    k = min(COUNTED, len(frames))
    c = int(rng.integers(k + 1))
    while True:
        allowed = [o for o in classes if sum(f["glyph"] == o for f in frames) >= c
                   and sum(f["glyph"] != o for f in frames) >= k - c]
        if allowed:
            break
        c -= 1
    o = str(rng.choice(allowed))
    showing = [t for t, f in enumerate(frames) if f["glyph"] == o]
    others = [t for t, f in enumerate(frames) if f["glyph"] != o]
    needed = [int(t) for t in rng.choice(showing, c, replace=False)] + [int(t) for t in rng.choice(others, k - c,
                                                                                                     replace=False)]
    needed = [needed[i] for i in rng.permutation(k)]
    options, letter = _lettered(rng, [str(i) for i in range(k + 1)], str(c), shuffle=False)
    question = (f"How many of the frames with the {_listed([frames[t]['colour'] for t in needed])} borders show "
                f"{_showing(o, glyph_kind)}?")
    return Question(question, options, letter, None, needed, "count", o)


def ask_between(rng: np.random.Generator, frames: list[dict], fps: float) -> Question:
    """The span from the earlier of two named frames to the later one (both included)."""
    a, b = sorted(int(t) for t in rng.choice(len(frames), 2, replace=False))
    start, end = a / fps, (b + 1) / fps
    question = (f"When does the video go from the frame with the {frames[a]['colour']} border to the frame with the "
                f"{frames[b]['colour']} border? Answer with [start, end] in seconds.")
    return Question(question, [], f"[{start:.2f}, {end:.2f}]", (start, end), [a, b], "between")


def ask(rng: np.random.Generator, frames: list[dict], kind: str, glyph_kind: str, fps: float,
        target: int | None = None) -> Question:
    """A question of ``kind`` (MCQ_KINDS, GROUNDING_KINDS) about ``frames`` (each frame's colour and glyph);
    ``which`` and ``when`` ask about ``target`` (drawn when None), the others choose their own frames."""
    if kind in ("which", "when"):
        target = int(rng.integers(len(frames))) if target is None else target
        task = "grounding" if kind == "when" else "mcq"
        question, options, answer, span = make_question(rng, frames, target, task, glyph_kind, fps)
        return Question(question, options, answer, span, [target], kind)
    if kind == "same":
        return ask_same(rng, frames, glyph_kind)
    if kind == "count":
        classes = [str(d) for d in range(10)] if glyph_kind == "digits" else list(STRIPES)
        return ask_count(rng, frames, glyph_kind, classes)
    if kind == "between":
        return ask_between(rng, frames, fps)
    raise ValueError(f"unknown question kind {kind!r} (known: {MCQ_KINDS + GROUNDING_KINDS})")


def draw_kind(rng: np.random.Generator, grounding_fraction: float, multi_frame_fraction: float) -> str:
    """grounding w.p. ``grounding_fraction`` (``between`` w.p. ``multi_frame_fraction``, else ``when``); MCQ
    otherwise (``same`` or ``count`` equally often w.p. ``multi_frame_fraction``, else ``which``)."""
    grounding = rng.random() < grounding_fraction
    multi = multi_frame_fraction > 0 and rng.random() < multi_frame_fraction
    if grounding:
        return "between" if multi else "when"
    return ("same" if rng.random() < 0.5 else "count") if multi else "which"


def shaded(rng: np.random.Generator, colour: str, shade: int) -> tuple[int, int, int]:
    """The palette colour shifted by up to ± ``shade`` per channel (the palette's own colour when shade is 0)."""
    if not shade:
        return PALETTE[colour]
    shift = rng.integers(-shade, shade + 1, size=3)
    return tuple(int(v) for v in np.clip(np.array(PALETTE[colour]) + shift, 0, 255))


REPHRASE = ((re.compile(r"the frames with the (\w+) and the (\w+) border"),
             r"the \1-bordered and the \2-bordered frames"),
            (re.compile(r"the frames with the ([\w, ]+?) borders"), r"the frames bordered in \1"),
            (re.compile(r"the frame with the (\w+) border"), r"the \1-bordered frame"),
            (re.compile(r"^Which (.+) is shown in"), r"What \1 appears in"),
            (re.compile(r"^When does"), r"At what time does"))


def rephrase(question: str) -> str:
    """The ``alt`` phrasing of a question: other words, the same colours and the same answer format."""
    alt = question
    for pattern, words in REPHRASE:
        alt = pattern.sub(words, alt)
    if alt == question:
        raise ValueError(f"no alternative phrasing for {question!r}")
    return alt


def brief_runs(rng: np.random.Generator, n_colours: int, needed: Sequence[int], long: LongParams) -> list[int]:
    """Frames per colour in a long video: each needed colour ``long.brief`` frames, the others share the rest
    (the leftover frames go to random colours, so where a brief run starts is not aligned with any sampler)."""
    runs = np.zeros(n_colours, dtype=int)
    for t in needed:
        runs[t] = int(rng.integers(long.brief[0], long.brief[1] + 1))
    others = [i for i in range(n_colours) if i not in needed]
    rest = long.frames - int(runs.sum())
    runs[others] = rest // len(others)
    runs[rng.choice(others, size=rest % len(others), replace=False)] += 1
    return runs.tolist()


def render_sample(params: SynthParams, split: str, index: int, out_dir: Path) -> Sample:
    """Render one video to ``out_dir/videos/<id>.mp4`` and return its manifest row (deterministic per seed, split
    name and index: adding or resizing another split changes nothing here)."""
    rng = np.random.default_rng([params.seed, zlib.crc32(split.encode()), index])
    look, long = params.looks.get(split, PLAIN), params.long.get(split)
    side = look.frame_side or params.frame_side
    colours = [str(c) for c in rng.choice(list(PALETTE), size=params.n_frames, replace=False)]
    lo, hi = params.need_range
    needs = draw_needs(rng, params.n_frames, lo, hi, params.need_spread) if lo < 1 else [None] * params.n_frames
    rendered = [render_frame(rng, side, c, params.glyph, params.glyph_size, need, look, shaded(rng, c, look.shade))
                for c, need in zip(colours, needs, strict=True)]
    frames, labels = [f for f, _ in rendered], [lab for _, lab in rendered]
    target = int(rng.integers(params.n_frames))
    kind = draw_kind(rng, 0.0 if long else params.grounding_fraction, params.multi_frame_fraction)
    colours_meta = [lab.meta() for lab in labels]
    q = ask(rng, colours_meta, kind, params.glyph, params.fps, target)
    if look.phrasing == "alt":
        q = replace(q, question=rephrase(q.question))
    sample_id = f"{split}-{index:05d}"
    video = out_dir / "videos" / f"{sample_id}.mp4"
    hold = params.hold.get(split, 1)
    runs = brief_runs(rng, params.n_frames, q.needed, long) if long else [hold] * params.n_frames
    speed = sum(runs) / params.n_frames  # more frames in the same duration
    with atomic_path(video) as tmp:
        write_mp4(tmp, [f for f, n in zip(frames, runs, strict=True) for _ in range(n)], (side, side),
                  params.fps * speed, params.crf)
    # labels per video frame; a needed frame is the middle of its colour's run (every frame of the run shows it)
    frames_meta = [m for m, n in zip(colours_meta, runs, strict=True) for _ in range(n)]
    needed = [sum(runs[:t]) + runs[t] // 2 for t in q.needed]
    meta = {"target_frame": needed[0], "needed_frames": needed, "question_kind": q.kind, "glyph_kind": params.glyph,
            "frames": frames_meta, "hold": hold, "runs": runs}
    return Sample(
        id=sample_id, video=f"videos/{sample_id}.mp4", question=q.question, options=q.options, answer=q.answer,
        task="grounding" if q.kind in GROUNDING_KINDS else "mcq", span=q.span, split=split, meta=meta,
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
