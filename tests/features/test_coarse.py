import numpy as np
import pytest
import torch

from resadapt.backbone.builtin import BuiltinConfig, BuiltinVideoQA
from resadapt.config import ShardParams
from resadapt.data.shards import write_shards
from resadapt.data.synth import PALETTE, STRIPES
from resadapt.features.coarse import BuiltinEncoder, HFEncoder, extract_split, load_features, save_features
from tests.conftest import counting_clip, mcq_row, write_manifest


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("in")
    rows = []
    for i in range(3):
        counting_clip(root / f"v{i}.mp4", 8, size=(56, 56))
        rows.append(mcq_row(f"s{i}", f"v{i}.mp4", question=f"Which stripe is in the frame with the red border {i}?"))
    out = tmp_path_factory.mktemp("shards")
    write_shards(write_manifest(root / "m.jsonl", rows), ShardParams(out_dir=str(out), n_frames=4), progress=False)
    return out


def tiny_clip(path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<|endoftext|>"))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    tok.train_from_iterator(["which stripe is in the frame with the red border"] * 20, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|startoftext|>", "<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    text = dict(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=64, eos_token_id=fast.eos_token_id, bos_token_id=fast.bos_token_id,
                pad_token_id=fast.pad_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=8)
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(path)
    image = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image, tokenizer=fast).save_pretrained(path)
    return str(path)


def test_builtin_features_are_aligned_with_the_shards_and_round_trip(shards, tmp_path):
    torch.manual_seed(0)
    model = BuiltinVideoQA(BuiltinConfig(glyph_classes=list(STRIPES), colours=list(PALETTE), vocab=["red", "which"]))
    features = extract_split(BuiltinEncoder(model, 56), str(shards), "train", progress=False)
    assert features.keys == ["s0", "s1", "s2"]
    assert features.patches.shape == (3, 4, 4, 64) and features.frame_mask.all()
    assert features.frame_embed.shape == (3, 4, 16) and features.query_embed.shape == (3, 16)
    assert torch.allclose(features.frame_embed.sum(-1), torch.ones(3, 4))  # colour distributions
    assert features.text.shape[0] == 3 and features.text_mask.sum(-1).tolist() == [10, 10, 10]
    save_features(features, tmp_path, "train")
    loaded = load_features(tmp_path, "train")
    assert loaded.keys == features.keys and torch.equal(loaded.patches, features.patches)
    assert len(loaded.select([0, 2])) == 6
    with pytest.raises(ValueError, match="multiple of 28"):
        BuiltinEncoder(model, 50)
    with pytest.raises(FileNotFoundError, match="run the features stage"):
        load_features(tmp_path, "eval")


def test_a_clip_style_checkpoint_gives_patch_tokens_and_shared_space_embeddings(shards, tmp_path):
    encoder = HFEncoder(tiny_clip(tmp_path / "clip"), 56)
    features = extract_split(encoder, str(shards), "train", progress=False)
    assert features.patches.shape == (3, 4, 17, 32)  # CLS + 4x4 patches of the 32-px tower input
    assert features.frame_embed.shape == (3, 4, 16) and features.query_embed.shape == (3, 16)
    assert torch.allclose(features.query_embed.norm(dim=-1), torch.ones(3))
    assert np.isfinite(features.text.numpy()).all()


def test_features_on_the_fly_equal_the_split_features_and_pad_other_frame_counts(shards):
    from resadapt.data.shards import iter_split
    from resadapt.features.online import encode

    torch.manual_seed(0)
    encoder = BuiltinEncoder(BuiltinVideoQA(BuiltinConfig(glyph_classes=list(STRIPES), colours=list(PALETTE),
                                                          vocab=["red", "which"])), 56)
    stored = extract_split(encoder, str(shards), "train", progress=False)
    samples = list(iter_split(shards, "train"))
    clips = [torch.from_numpy(f) for _, f, _ in samples]
    online = encode(encoder, clips, [m["question"] for _, _, m in samples], [k for k, _, _ in samples])
    assert online.keys == stored.keys and torch.allclose(online.patches, stored.patches)
    mixed = encode(encoder, [clips[0], torch.cat([clips[1], clips[1]])], ["a", "b"])
    assert mixed.patches.shape[1] == 8 and mixed.frame_mask.sum(-1).tolist() == [4, 8]
