"""The contrastive encoder: trained on frame–caption pairs of real synthetic shards, blind to the questions."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from resadapt.allocator.model import Allocator, AllocatorConfig, frame_query_match
from resadapt.backbone.interface import Query
from resadapt.config import ContrastiveParams
from resadapt.data.shards import iter_split, sampled_labels
from resadapt.features.captions import TEMPLATES, Vocabulary, caption, captioned_frames, coarse_samples, words
from resadapt.features.contrastive import ContrastiveEncoder, load_dual_encoder, save_dual_encoder, train_dual_encoder
from resadapt.features.extract import encode, extract_split
from resadapt.features.texture import DIM
from resadapt.inference import Package, PackageError
from tests.conftest import counting_clip
from tests.features.conftest import N_FRAMES

QUICK = ContrastiveParams(steps=12, videos_per_step=2, dim=16, embed_dim=8)


def train(shard_dir, p=QUICK):
    return train_dual_encoder(captioned_frames(coarse_samples(str(shard_dir), "train", 56)), 56, p)


def test_training_never_reads_questions_answers_targets_or_glyphs(synth):
    plain = [m for _, _, m in iter_split(str(synth["plain"]), "train")]
    other = [m for _, _, m in iter_split(str(synth["scrambled"]), "train")]
    assert all(a["question"] != b["question"] and "target_frame" not in b["meta"]
               for a, b in zip(plain, other, strict=True))
    a, log = train(synth["plain"])
    b, _ = train(synth["scrambled"])
    assert len(log) == 2 and all(np.isfinite(e["loss"]) for e in log)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    c, _ = train(synth["plain"], QUICK.model_copy(update={"seed": 1}))
    assert not torch.equal(a.image[0].weight, c.image[0].weight)  # the weights do depend on what it is given


def test_captions_name_the_border_colour_and_never_a_glyph():
    for k in range(len(TEMPLATES)):
        text = caption("maroon", k)
        assert "maroon" in words(text) and not {"stripe", "stripes", "digit", "horizontal", "vertical"} & set(
            words(text))
    vocab = Vocabulary.of_captions(["red", "navy"])
    ids = vocab.ids("Which stripe orientation is shown in the frame with the red border?")
    assert ids[words("Which stripe orientation is shown in the frame with the red border?").index("red")] == \
        vocab.words.index("red")
    assert sum(i >= len(vocab.words) for i in ids) == 5  # which, stripe, orientation, is, shown: hashed, fixed ids
    assert vocab.ids("stripe") == vocab.ids("stripe") and vocab.ids("when") != vocab.ids("which")


def test_a_split_without_captions_is_refused_naming_it(shards):
    with pytest.raises(ValueError, match="split 'train'.*no video with per-frame border colours.*encoder hf"):
        captioned_frames(coarse_samples(str(shards), "train", 56), f"{shards} split 'train'")


def test_zero_shot_it_finds_the_queried_frame_from_the_question_and_stays_frozen(synth, tmp_path):
    torch.set_num_threads(1)
    model, log = train(synth["plain"], ContrastiveParams(steps=150, videos_per_step=4, dim=32, embed_dim=16))
    assert log[-1]["caption_top1"] >= 0.9
    assert not any(p.requires_grad for p in model.parameters())
    save_dual_encoder(model, tmp_path / "encoder", {"note": "test"})
    encoder = ContrastiveEncoder(load_dual_encoder(tmp_path / "encoder"), 56)
    features = extract_split(encoder, str(synth["plain"]), "val", progress=False, texture=False)
    metas = [m for _, _, m in iter_split(str(synth["plain"]), "val")]
    assert features.patches.shape == (8, N_FRAMES, 4, 32) and features.frame_embed.shape == (8, N_FRAMES, 16)
    assert not features.patches.requires_grad and not features.query_embed.requires_grad
    match = frame_query_match(features.frame_embed, features.query_embed)  # [N, T]
    hits = [int(match[i].argmax()) == sampled_labels(m)[1] for i, m in enumerate(metas)]
    assert np.mean(hits) >= 0.75  # chance: 1/8

    # a question naming two frames: each of its caption words is a view, so both frames match (the pooled
    # embedding blends the two colours); chance of the pair being the top two: 1/28
    videos = [(torch.as_tensor(f), [label["colour"] for label in sampled_labels(m)[0]])
              for _, f, m in iter_split(str(synth["plain"]), "val")]
    questions = [f"Do the frames with the {c[1]} and the {c[5]} border show the same stripe orientation?"
                 for _, c in videos]
    two = encode(encoder, [f for f, _ in videos], questions, texture=False)
    assert two.query_embed.shape[:2] == (8, len(set(words(questions[0])) & set(encoder.model.vocabulary.words)))
    both = [set(frame_query_match(two.frame_embed[i], two.query_embed[i]).topk(2).indices.tolist()) == {1, 5}
            for i in range(8)]
    _, pooled = encoder.model.texts(questions)
    blended = [set(frame_query_match(two.frame_embed[i], pooled[i]).topk(2).indices.tolist()) == {1, 5}
               for i in range(8)]
    assert np.mean(both) >= 0.75 and np.mean(both) >= np.mean(blended)
    # the question's words are the text features; the ones it never saw in a caption still get their own vectors
    first = Query.from_meta(metas[0])
    assert features.text_mask[0].sum() == len(words(first.question))
    frames = torch.from_numpy(next(iter(iter_split(str(synth["plain"]), "val")))[1])
    again = encode(encoder, [frames], [first], texture=False)
    assert torch.allclose(again.frame_embed[0], features.frame_embed[0], atol=1e-5)


def contrastive_package(model, pkg, texture: bool | None, patch_dim: int) -> Path:
    """A package with the contrastive encoder; ``texture`` None: a pipeline.json from before features.texture."""
    save_dual_encoder(model, pkg / "encoder", {})
    torch.manual_seed(0)
    Allocator(AllocatorConfig(patch_dim=patch_dim, text_dim=QUICK.dim, width=16, heads=2, aligned_dim=QUICK.embed_dim,
                              s_min=0.1)).save_pretrained(pkg)
    features = {"encoder": "contrastive", "checkpoint": "", "side": 56} | ({} if texture is None else
                                                                           {"texture": texture})
    (pkg / "pipeline.json").write_text(json.dumps({
        "shard": {"n_frames": 4, "patch_factor": 28, "max_pixels": 602112, "frame_codec": "jpg", "jpeg_quality": 95},
        "features": features,
        "backbone": {"source": "hf", "engine": "transformers", "device": "cpu", "dtype": "float32"}}))
    return pkg


@pytest.mark.parametrize("texture", [None, True])
def test_a_package_allocates_with_its_contrastive_encoder(synth, tmp_path, texture):
    model, _ = train(synth["plain"])
    pkg = contrastive_package(model, tmp_path / "package", texture, QUICK.dim + (DIM if texture else 0))
    video = counting_clip(tmp_path / "v.mp4", 8, size=(112, 112))
    allocation = Package(pkg).allocate(video, "Which stripe is in the frame with the red border?", budget=0.5)
    assert len(allocation.scales) == 4 and allocation.plan.retention <= 0.5 + 1e-9


def test_a_package_whose_allocator_does_not_fit_its_features_is_a_clear_error(synth, tmp_path):
    pkg = contrastive_package(train(synth["plain"])[0], tmp_path / "package", True, QUICK.dim)
    video = counting_clip(tmp_path / "v.mp4", 8, size=(112, 112))
    with pytest.raises(PackageError, match=f"features are {QUICK.dim + DIM} wide but the Allocator reads {QUICK.dim}"):
        Package(pkg).allocate(video, "Which stripe is in the frame with the red border?")
