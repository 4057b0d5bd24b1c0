"""One factory builds every backbone: the built-in model, or the exact pinned Qwen checkpoint."""

import json

import pytest
import torch

from resadapt.backbone.builtin import BuiltinBackbone, BuiltinConfig, BuiltinVideoQA
from resadapt.backbone.factory import BackboneError, BackboneSpec, build_backbone
from resadapt.backbone.pin import PinError, checkpoint_identity
from resadapt.backbone.qwen import QwenBackbone
from resadapt.backbone.tiny_qwen import build
from resadapt.config import Params, ParamsError, load_params


def pin(checkpoint, folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "identity.json").write_text(json.dumps({"source": "hf", **checkpoint_identity(str(checkpoint))}))
    return folder


def test_the_pinned_checkpoint_loads_and_a_changed_file_is_refused_by_name(tmp_path):
    checkpoint = build("qwen2_5_vl", tmp_path / "ckpt")
    pinned = pin(checkpoint, tmp_path / "pinned")
    backbone = build_backbone(BackboneSpec("hf", str(pinned), device="cpu", dtype="bfloat16", max_new_tokens=2))
    assert isinstance(backbone, QwenBackbone) and backbone.anchored
    assert next(backbone.model.parameters()).dtype == torch.bfloat16 and backbone.max_new_tokens == 2
    assert not any(p.requires_grad for p in backbone.model.parameters())  # frozen unless trainable
    config = checkpoint / "config.json"
    config.write_text(config.read_text() + "\n")
    with pytest.raises(PinError, match=r"config\.json: changed"):
        build_backbone(BackboneSpec("hf", str(pinned), device="cpu"))
    (checkpoint / "extra.safetensors").write_bytes(b"x")
    with pytest.raises(PinError, match=r"extra\.safetensors: not in the pinned checkpoint"):
        build_backbone(BackboneSpec("hf", str(pinned), device="cpu"))


def test_builtin_is_one_case_of_the_factory(tmp_path):
    BuiltinVideoQA(BuiltinConfig(glyph_classes=["a", "b"], colours=["red"], vocab=["red"])).save_pretrained(tmp_path)
    frozen = build_backbone(BackboneSpec("builtin", str(tmp_path), device="cpu"), cache=True)
    assert isinstance(frozen, BuiltinBackbone) and frozen.cache and not frozen.model.training
    trainable = build_backbone(BackboneSpec("builtin", str(tmp_path), device="cpu"), trainable=True, cache=True)
    assert trainable.model.training and not trainable.cache  # a model that changes cannot reuse per-frame work
    with pytest.raises(BackboneError, match="no built-in backbone weights"):
        build_backbone(BackboneSpec("builtin", str(tmp_path / "nowhere")))
    with pytest.raises(BackboneError, match="identity.json"):
        build_backbone(BackboneSpec("hf", str(tmp_path)))


def test_spec_from_params_uses_the_update_only_when_one_was_trained(tmp_path):
    params = Params.model_validate({"backbone": {"source": "hf", "checkpoint": "x", "device": "cpu",
                                                 "dtype": "bfloat16", "max_new_tokens": 7},
                                    "train": {"update_backbone": True, "out_dir": str(tmp_path)}})
    spec = BackboneSpec.from_params(params)
    assert (spec.device, spec.dtype, spec.max_new_tokens, spec.trained) == ("cpu", "bfloat16", 7,
                                                                           str(tmp_path / "backbone"))
    assert BackboneSpec.from_params(params, trained=False).trained is None


@pytest.mark.parametrize("bad, key", [
    ("train:\n  lora: {enabled: true}\n", "update_backbone"),
    ("train:\n  update_backbone: true\n  gradient_checkpointing: true\n", "backbone.source: hf"),
    ("train:\n  update_batch: 0\n", "train.update_batch"),
])
def test_contradictory_backbone_params_are_errors(tmp_path, bad, key):
    path = tmp_path / "params.yaml"
    path.write_text(bad)
    with pytest.raises(ParamsError, match=key):
        load_params(path)
