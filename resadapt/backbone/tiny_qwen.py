"""Tiny random-weight Qwen2.5-VL / Qwen3-VL checkpoints built offline (tests, benchmarks; no download).

A byte-level BPE trained on a few lines, the real processors and a short Qwen-style chat template: enough to run
the adapter's real code paths (processor, chunked video items, generate, log-probs) in a fraction of a second.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
            "<|image_pad|>", "<|video_pad|>"]
TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TEXT = ["Which stripe orientation is shown in the frame with the red border?", "A. vertical B. horizontal",
        "Answer with the option's letter. When does it appear? [0.5, 1.0] seconds 0123456789 ABCD"]


def tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=420, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TEXT * 50, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   padding_side="left")
    fast.add_special_tokens({"additional_special_tokens": SPECIALS[1:]})
    return fast


def _ids(tok) -> dict:
    get = tok.convert_tokens_to_ids
    return {"image_token_id": get("<|image_pad|>"), "video_token_id": get("<|video_pad|>"),
            "vision_start_token_id": get("<|vision_start|>"), "vision_end_token_id": get("<|vision_end|>")}


def build(kind: str, out: Path) -> Path:
    """Save a tiny random ``qwen2_5_vl`` or ``qwen3_vl`` checkpoint with its processor to ``out``."""
    import torch

    torch.manual_seed(0)
    tok = tokenizer()
    text = dict(vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
                pad_token_id=tok.pad_token_id, bos_token_id=None)
    if kind == "qwen2_5_vl":
        from transformers import (
            Qwen2_5_VLConfig,
            Qwen2_5_VLForConditionalGeneration,
            Qwen2_5_VLProcessor,
            Qwen2VLImageProcessor,
            Qwen2VLVideoProcessor,
        )

        config = Qwen2_5_VLConfig(
            text_config={**text, "rope_parameters": {"rope_type": "default", "rope_theta": 1e4,
                                                      "mrope_section": [4, 6, 6]}},
            vision_config=dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, out_hidden_size=128,
                               patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                               fullatt_block_indexes=[1]),
            tie_word_embeddings=True, **_ids(tok))
        model = Qwen2_5_VLForConditionalGeneration(config)
        size = {"shortest_edge": 28 * 28, "longest_edge": 1024 * 28 * 28}
        processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(size=size), tokenizer=tok,
                                        video_processor=Qwen2VLVideoProcessor(size=size, do_sample_frames=False),
                                        chat_template=TEMPLATE)
    else:
        from transformers import (
            Qwen2VLImageProcessor,
            Qwen3VLConfig,
            Qwen3VLForConditionalGeneration,
            Qwen3VLProcessor,
            Qwen3VLVideoProcessor,
        )

        config = Qwen3VLConfig(
            text_config={**text, "head_dim": 32, "rope_parameters": {"rope_type": "default", "rope_theta": 1e4,
                                                                      "mrope_section": [4, 6, 6],
                                                                      "mrope_interleaved": True}},
            vision_config=dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, out_hidden_size=128,
                               patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                               num_position_embeddings=256, deepstack_visual_indexes=[0]),
            tie_word_embeddings=True, **_ids(tok))
        model = Qwen3VLForConditionalGeneration(config)
        size = {"shortest_edge": 32 * 32, "longest_edge": 1024 * 32 * 32}
        processor = Qwen3VLProcessor(image_processor=Qwen2VLImageProcessor(patch_size=16, size=size), tokenizer=tok,
                                     video_processor=Qwen3VLVideoProcessor(size=size, patch_size=16,
                                                                           do_sample_frames=False),
                                     chat_template=TEMPLATE)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.convert_tokens_to_ids("<|im_end|>")
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
