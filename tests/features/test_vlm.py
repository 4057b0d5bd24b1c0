import pytest
import torch

from resadapt.allocator.model import Allocator, AllocatorConfig
from resadapt.backbone.interface import Query
from resadapt.backbone.resize import resize_frames
from resadapt.data.shards import iter_split
from resadapt.features.coarse import load_features, save_features
from resadapt.features.extract import encode, extract_split
from resadapt.features.online import make_encoder
from resadapt.features.vlm import VLMEncoder


def test_vlm_features_end_to_end_from_shards_to_the_allocator(shards, smolvlm, tmp_path):
    encoder = make_encoder("vlm", 32, checkpoint=smolvlm, device="cpu", batch_size=4)
    features = extract_split(encoder, str(shards), "train", progress=False, texture=False)
    # 32 px / 8-px patches = 4x4 tower tokens, merged 2x2 by the connector → 4 tokens of the LM's width 48
    assert features.keys == ["s0", "s1", "s2"] and features.patches.shape == (3, 4, 4, 48)
    assert features.frame_embed.shape == (3, 4, 0) and features.query_embed.shape == (3, 0)

    # patches are the connector's output over the downscaled frames, normalised as the image processor says
    samples = list(iter_split(shards, "train"))
    frames = resize_frames(torch.from_numpy(samples[1][1]), (32, 32))
    pixels = (frames.permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        want = encoder.model.connector(encoder.model.vision_model(pixel_values=pixels).last_hidden_state)
    assert torch.allclose(features.patches[1], want, atol=1e-5)

    # the query is the question with its lettered options and the instruction, through the text tower
    for i, (_, _, meta) in enumerate(samples):
        prompt = Query.from_meta(meta).prompt()
        assert "B. horizontal" in prompt and prompt.endswith("Answer with the option's letter.")
        ids = encoder.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        n = int(features.text_mask[i].sum())
        assert n == ids.shape[1] > len(encoder.tokenizer(meta["question"], add_special_tokens=False)["input_ids"])
        with torch.no_grad():
            states = encoder.model.text_model(input_ids=ids).last_hidden_state[0]
        assert torch.allclose(features.text[i, :n], states, atol=1e-5)

    save_features(features, tmp_path, "train")
    loaded = load_features(tmp_path, "train")
    inputs = loaded.select([2, 0])
    assert all(x.dtype in (torch.float32, torch.bool) for x in inputs)
    config = AllocatorConfig(patch_dim=loaded.patches.shape[-1], text_dim=loaded.text.shape[-1], width=16, heads=2,
                             aligned_dim=loaded.frame_embed.shape[-1])
    assert config.aligned_dim == 0  # no shared frame/query space: no similarity signal
    out = Allocator(config)(*inputs)
    assert out["alpha"].shape == (2, 4) and torch.isfinite(out["alpha"]).all() and torch.isfinite(out["beta"]).all()


def test_vlm_batched_encoding_equals_unbatched_and_on_the_fly(shards, smolvlm):
    one, some, many = (extract_split(VLMEncoder(smolvlm, 32, batch_size=b), str(shards), "train", progress=False,
                                       texture=False)
                       for b in (1, 3, 64))
    for name in ("patches", "text"):
        for other in (some, many):
            assert torch.allclose(getattr(one, name), getattr(other, name), atol=1e-5), name
    assert torch.equal(one.text_mask, many.text_mask)
    samples = list(iter_split(shards, "train"))
    online = encode(VLMEncoder(smolvlm, 32), [torch.from_numpy(f) for _, f, _ in samples],
                    [Query.from_meta(m) for _, _, m in samples], texture=False)
    assert torch.allclose(online.text, many.text, atol=1e-5) and torch.allclose(online.patches, many.patches)


def test_a_bad_vlm_checkpoint_or_side_is_a_clear_error(tmp_path, smolvlm, clip):
    with pytest.raises(ValueError, match=r"nowhere: cannot be loaded as a SmolVLM/Idefics3-style VLM"):
        VLMEncoder(str(tmp_path / "nowhere"), 32)
    with pytest.raises(ValueError, match=rf"{clip}: cannot be loaded as a SmolVLM/Idefics3-style VLM"):
        VLMEncoder(clip, 32)  # a CLIP checkpoint
    with pytest.raises(ValueError, match="features.side must be a multiple of 16"):
        VLMEncoder(smolvlm, 40)
    encoder = VLMEncoder(smolvlm, 32, device="cpu")
    assert all(p.device.type == "cpu" for p in encoder.model.parameters())
