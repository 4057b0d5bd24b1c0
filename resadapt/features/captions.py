"""Per-frame image–caption pairs for the contrastive encoder, and the words its text tower reads.

A caption names only what a frame's coarse view shows, its border colour ("a frame with a red border", in one of
several phrasings), never its glyph. The pairs are read from a split's shards with exactly three fields of a
sample: its frames, ``frame_indices`` (which video frames were sampled) and the generator's per-frame border colour
``meta.frames[i].colour``. No question, answer, option, task, span, glyph or queried frame is ever read (the tests
train on shards where all of those are scrambled and get the same weights).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from resadapt.backbone.resize import resize_frames
from resadapt.data.shards import iter_split

# phrasings of "this frame's border is <colour>"; a caption is one of them, drawn per frame and step
TEMPLATES = ("a frame with a {} border", "{} border", "the frame with the {} border", "an image framed in {}",
             "a picture with a {} edge", "a {} bordered frame", "video frame, border colour {}",
             "this frame has a {} border")
OOV_BUCKETS = 256  # words outside the caption vocabulary (a question's other words) hash into these ids
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """Lower-cased alphanumeric words: 'When does the red-bordered frame appear?' → when, does, the, red, ..."""
    return _WORD.findall(text.lower())


def caption(colour: str, template: int) -> str:
    return TEMPLATES[template % len(TEMPLATES)].format(colour)


class Vocabulary:
    """Ids of the caption words (``words``, sorted: ids 0..V−1) and, for any other word, one of ``OOV_BUCKETS`` ids
    V..V+K−1 by a stable hash (crc32), so every word of a question gets its own fixed token."""

    def __init__(self, vocab: Sequence[str]):
        self.words = list(vocab)
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def of_captions(cls, colours: Sequence[str]) -> Vocabulary:
        seen = {w for t in TEMPLATES for w in words(t.format(""))} | {w for c in colours for w in words(c)}
        return cls(sorted(seen))

    def __len__(self) -> int:
        return len(self.words) + OOV_BUCKETS

    def ids(self, text: str) -> list[int]:
        known = len(self.words)
        return [self.index[w] if w in self.index else known + zlib.crc32(w.encode()) % OOV_BUCKETS
                for w in words(text)]


@dataclass
class CaptionedFrames:
    """A split's frames at the coarse side, per video, with each frame's border colour (the caption's content)."""

    frames: list[torch.Tensor]  # per video uint8 [T_i, side, side, 3]
    colours: list[list[str]]  # per video, per frame
    skipped: list[str]  # keys of videos without per-frame colours (not generated here): no captions


def coarse_samples(shard_dir: str, split: str, side: int) -> list[tuple[str, torch.Tensor, dict]]:
    """A split's samples with their frames already at ``side`` px (decoded and downscaled once, for the
    pretraining and the feature extraction both)."""
    return [(key, resize_frames(torch.from_numpy(clip), (side, side)), meta)
            for key, clip, meta in iter_split(shard_dir, split)]


def captioned_frames(samples: Iterable[tuple[str, torch.Tensor, dict]], source: str = "") -> CaptionedFrames:
    """The caption pairs of ``samples`` (key, frames, shard meta): every frame with its generator colour label, read
    from ``meta["frame_indices"]`` and ``meta["meta"]["frames"][i]["colour"]``, nothing else."""
    frames, colours, skipped = [], [], []
    for key, clip, meta in samples:
        labels = (meta.get("meta") or {}).get("frames")
        if not labels:
            skipped.append(key)
            continue
        colours.append([str(labels[i]["colour"]) for i in meta["frame_indices"]])
        frames.append(clip)
    if not frames:
        raise ValueError(f"{source or 'samples'}: no video with per-frame border colours (meta.frames[].colour, "
                         "written by the synth stage): the contrastive encoder has no captions to learn from; use "
                         "features.encoder hf (a CLIP/SigLIP checkpoint) for your own videos")
    return CaptionedFrames(frames, colours, skipped)
