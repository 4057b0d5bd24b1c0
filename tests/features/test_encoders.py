import numpy as np
import pytest
import torch

from resadapt.config import FeaturesParams
from resadapt.features.encoders import BuiltinEncoder, HFEncoder, pick_device
from resadapt.features.extract import extract_split
from tests.features.conftest import builtin_model


def test_builtin_features_are_aligned_with_the_shards(shards):
    features = extract_split(BuiltinEncoder(builtin_model(), 56), str(shards), "train", progress=False, texture=False)
    assert features.keys == ["s0", "s1", "s2"]
    assert features.patches.shape == (3, 4, 4, 64) and features.frame_mask.all()
    assert features.frame_embed.shape == (3, 4, 16) and features.query_embed.shape == (3, 16)
    assert torch.allclose(features.frame_embed.sum(-1), torch.ones(3, 4))  # colour distributions
    assert features.text.shape[0] == 3 and features.text_mask.sum(-1).tolist() == [10, 10, 10]  # question words
    with pytest.raises(ValueError, match="multiple of 28"):
        BuiltinEncoder(builtin_model(), 50)


def test_a_clip_style_checkpoint_gives_patch_tokens_and_shared_space_embeddings(shards, clip):
    features = extract_split(HFEncoder(clip, 56), str(shards), "train", progress=False, texture=False)
    assert features.patches.shape == (3, 4, 17, 32)  # CLS + 4x4 patches of the 32-px tower input
    assert features.frame_embed.shape == (3, 4, 16) and features.query_embed.shape == (3, 16)
    assert torch.allclose(features.query_embed.norm(dim=-1), torch.ones(3))
    assert np.isfinite(features.text.numpy()).all()
    # padding to the tower's length is masked out: only the question's tokens (+ start/end) are kept
    assert features.text_mask.sum(-1).max() < 64 and features.text.shape[1] == features.text_mask.sum(-1).max()


@pytest.mark.parametrize("kind", ["builtin", "hf"])
def test_batched_encoding_equals_one_frame_at_a_time(shards, clip, kind):
    make = {"builtin": lambda b: BuiltinEncoder(builtin_model(), 56, batch_size=b),
            "hf": lambda b: HFEncoder(clip, 56, batch_size=b)}[kind]
    one, some, many = (extract_split(make(b), str(shards), "train", progress=False, texture=True) for b in (1, 3, 64))
    for name in ("patches", "frame_embed", "text", "query_embed"):
        for other in (some, many):
            assert torch.allclose(getattr(one, name), getattr(other, name), atol=1e-5), name
    assert torch.equal(one.text_mask, many.text_mask) and torch.equal(one.frame_mask, many.frame_mask)


def test_the_device_param_is_honoured(shards, clip):
    for encoder in (BuiltinEncoder(builtin_model(), 56, device="cpu"), HFEncoder(clip, 56, device="cpu")):
        params = encoder.model.parameters()
        assert encoder.device == torch.device("cpu") and all(p.device.type == "cpu" for p in params)
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="features.device is 'cuda:1' but torch sees no CUDA"):
            BuiltinEncoder(builtin_model(), 56, device="cuda:1")


def test_features_params_check_device_batch_and_checkpoint():
    assert FeaturesParams(device="cuda:0", batch_size=8, encoder="vlm", checkpoint="x").dtype == "float16"
    for bad in ({"device": "gpu"}, {"batch_size": 0}, {"dtype": "bfloat16"}, {"encoder": "vlm"}):
        with pytest.raises(ValueError):
            FeaturesParams(**bad)
