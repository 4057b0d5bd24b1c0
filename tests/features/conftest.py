"""Small real shards (counting clips; a rendered synthetic set, also with its questions scrambled) and tiny
random-weight encoders (CLIP, SmolVLM) built offline inside the tests."""

import json

import numpy as np
import pytest
import torch

from resadapt.backbone.builtin import BuiltinConfig, BuiltinVideoQA
from resadapt.config import ShardParams, SynthParams
from resadapt.data.shards import write_shards
from resadapt.data.synth import PALETTE, STRIPES, build_dataset
from tests.conftest import counting_clip, mcq_row, write_manifest

N_FRAMES = 8  # frames per video of the synthetic set
TEXT = ["Which stripe is in the frame with the red border? A. vertical B. horizontal C. none",
        "Answer with the option's letter."]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("in")
    rows = []
    for i in range(3):
        counting_clip(root / f"v{i}.mp4", 8, size=(56, 56))
        rows.append(mcq_row(f"s{i}", f"v{i}.mp4", question=f"Which stripe is in the frame with the red border {i}?",
                            options=["vertical", "horizontal", "none"][: 2 + i % 2]))
    out = tmp_path_factory.mktemp("shards")
    write_shards(write_manifest(root / "m.jsonl", rows), ShardParams(out_dir=str(out), n_frames=4), progress=False)
    return out


def scrambled(row: dict, rng: np.random.Generator) -> dict:
    """The row with every question-side field changed (question, options, answer, span, target) or removed, and
    every frame's glyph and glyph box replaced: only the videos and the border colours stay."""
    row = json.loads(json.dumps(row))
    row["question"] = f"Is the answer {rng.integers(1000)}? {rng.permutation(list('abcdefgh')).tolist()}"
    if row["task"] == "mcq":
        row["options"] = list(reversed(row["options"]))
        row["answer"] = "A" if row["answer"] != "A" else "B"
    else:
        row["span"], row["answer"] = [0.0, 0.5], "[0.00, 0.50]"
    del row["meta"]["target_frame"]
    for frame in row["meta"]["frames"]:
        frame["glyph"], frame["box"] = str(rng.integers(10)), rng.integers(0, 50, size=4).tolist()
    return row


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    """Shards of a small synthetic set, and shards of the same videos with the questions' fields scrambled."""
    root = tmp_path_factory.mktemp("synth")
    manifest = build_dataset(SynthParams(out_dir=str(root), n_frames=N_FRAMES, frame_side=112, glyph_size=12,
                                         need_range=(1.0, 1.0), multi_frame_fraction=0.0,
                                         splits={"train": 24, "val": 8}, hold={}),
                             progress=False)
    rng = np.random.default_rng(0)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    other = root / "scrambled.jsonl"
    other.write_text("".join(json.dumps(scrambled(r, rng)) + "\n" for r in rows))
    out = {}
    for name, m in (("plain", manifest), ("scrambled", other)):
        out[name] = tmp_path_factory.mktemp(name)
        write_shards(m, ShardParams(out_dir=str(out[name]), n_frames=N_FRAMES), progress=False)
    return out


def builtin_model() -> BuiltinVideoQA:
    torch.manual_seed(0)
    return BuiltinVideoQA(BuiltinConfig(glyph_classes=list(STRIPES), colours=list(PALETTE), vocab=["red", "which"]))


def bpe(special: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=special[-1]))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    tok.train_from_iterator(TEXT * 20, trainers.BpeTrainer(vocab_size=300, special_tokens=special,
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


def tiny_clip(path) -> str:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_object=bpe(["<|startoftext|>", "<|endoftext|>"]),
                                   bos_token="<|startoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                   unk_token="<|endoftext|>")
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


def tiny_smolvlm(path) -> str:
    """SmolVLM-shaped: SigLIP tower (64-px native, 8-px patches), pixel-shuffle connector (×2), Llama text tower."""
    from transformers import (
        PreTrainedTokenizerFast,
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessor,
    )

    fast = PreTrainedTokenizerFast(tokenizer_object=bpe(["<image>", "<|im_end|>"]), eos_token="<|im_end|>")
    text = dict(model_type="llama", vocab_size=len(fast), hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=64,
                  patch_size=8)
    torch.manual_seed(0)
    config = SmolVLMConfig(vision_config=vision, text_config=text, scale_factor=2,
                           image_token_id=fast.convert_tokens_to_ids("<image>"))
    SmolVLMForConditionalGeneration(config).save_pretrained(path)
    fast.save_pretrained(path)
    SmolVLMImageProcessor().save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def smolvlm(tmp_path_factory) -> str:
    return tiny_smolvlm(tmp_path_factory.mktemp("smolvlm"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    return tiny_clip(tmp_path_factory.mktemp("clip"))
