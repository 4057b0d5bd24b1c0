"""The one place a backbone is built: ``backbone.source`` × ``backbone.engine``, on its device and dtype.

Stages, the package and the CLI describe what they want as a ``BackboneSpec`` (from params, or from a package's
pipeline.json) and call ``build_backbone``; nothing else knows which backbone it holds.

- builtin × transformers: the built-in model (``path`` holds its weights).
- hf × transformers: a Qwen2/2.5/3-VL checkpoint, loaded exactly as pinned in ``path``/identity.json (a local
  folder is re-hashed; a hub id is loaded at its resolved commit).
- hf × vllm: rollouts through vLLM's engine; scoring and updates on the transformers model (``HybridBackbone``).

``trained`` is the ResAdapt-RL output of ``train`` (``train.out_dir``/backbone): the built-in model's or Qwen's
full updated weights, or a LoRA adapter (peft) on the pinned Qwen checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from resadapt.backbone.pin import pinned_source

ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class LoraSpec:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class BackboneSpec:
    source: str  # builtin | hf
    path: str  # builtin: its weights folder; hf: the folder holding identity.json
    engine: str = "transformers"
    device: str = "auto"
    dtype: str = "float32"
    max_new_tokens: int = 64
    trained: str | None = None  # ResAdapt-RL weights or adapter, when the backbone was updated
    engine_kwargs: dict = field(default_factory=dict)

    @classmethod
    def from_params(cls, params, trained: bool = True) -> BackboneSpec:
        """The pipeline's backbone; with ``trained`` and ``train.update_backbone``, the updated one."""
        b = params.backbone
        updated = str(Path(params.train.out_dir) / "backbone") if trained and params.train.update_backbone else None
        return cls(b.source, b.out_dir, b.engine, b.device, b.dtype, b.max_new_tokens, updated)

    def describe(self) -> dict:
        """What a package records to rebuild this backbone (paths relative to the package where they live)."""
        return {"source": self.source, "engine": self.engine, "device": self.device, "dtype": self.dtype,
                "max_new_tokens": self.max_new_tokens}


class BackboneError(ValueError):
    """A backbone that cannot be built as specified (missing weights, a changed checkpoint, no engine)."""


def identity_of(path: str | Path) -> dict:
    file = Path(path) / "identity.json"
    if not file.is_file():
        raise BackboneError(f"{file}: no pinned checkpoint identity (run the backbone stage first)")
    return json.loads(file.read_text(encoding="utf-8"))


def build_backbone(spec: BackboneSpec, *, trainable: bool = False, lora: LoraSpec | None = None,
                   gradient_checkpointing: bool = False, cache: bool = False):
    """The ``Backbone`` for ``spec``. ``trainable``: ready for a ResAdapt-RL update (a fresh LoRA adapter when
    ``lora`` is given and nothing was trained yet); ``cache``: the built-in model may reuse per-frame work."""
    if spec.source == "builtin":
        from resadapt.backbone.builtin import BuiltinBackbone, BuiltinVideoQA
        from resadapt.backbone.device import DTYPES, pick_device

        weights = spec.trained or spec.path
        if not (Path(weights) / "model.safetensors").is_file():
            raise BackboneError(f"{weights}: no built-in backbone weights (run the backbone stage first)")
        model = BuiltinVideoQA.from_pretrained(weights).to(pick_device(spec.device), DTYPES[spec.dtype])
        return BuiltinBackbone(model.train(trainable).requires_grad_(trainable), cache=cache and not trainable)
    try:
        checkpoint, revision = pinned_source(identity_of(spec.path))
    except (KeyError, json.JSONDecodeError) as exc:
        raise BackboneError(f"{spec.path}/identity.json is not a pinned checkpoint identity: {exc}") from None
    if spec.engine == "vllm":
        from resadapt.backbone.vllm_engine import HybridBackbone

        return HybridBackbone(spec, checkpoint, revision, trainable=trainable, lora=lora,
                              gradient_checkpointing=gradient_checkpointing)
    return load_qwen(spec, checkpoint, revision, trainable=trainable, lora=lora,
                     gradient_checkpointing=gradient_checkpointing)


def load_qwen(spec: BackboneSpec, checkpoint: str, revision: str | None, *, trainable: bool,
              lora: LoraSpec | None, gradient_checkpointing: bool):
    """The pinned Qwen checkpoint (or its full ResAdapt-RL update), with its trained or a fresh LoRA adapter."""
    from resadapt.backbone.qwen import QwenBackbone

    trained = Path(spec.trained) if spec.trained else None
    adapter = trained is not None and (trained / ADAPTER_CONFIG).is_file()
    if trained is not None and not adapter and not (trained / "config.json").is_file():
        raise BackboneError(f"{trained}: no trained backbone weights or adapter (rerun the train stage)")
    weights = str(trained) if trained is not None and not adapter else checkpoint
    backbone = QwenBackbone.load(weights, revision=None if weights != checkpoint else revision, device=spec.device,
                                 dtype=spec.dtype, max_new_tokens=spec.max_new_tokens)
    model = backbone.model
    if adapter or (trainable and lora is not None):
        from peft import LoraConfig, PeftModel, get_peft_model

        if adapter:
            model = PeftModel.from_pretrained(model, str(trained), is_trainable=trainable)
        else:
            model = get_peft_model(model, LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                                     target_modules=list(lora.target_modules), bias="none"))
        backbone.model = model
    if trainable:
        model.train()
        if gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            if hasattr(model, "enable_input_require_grads"):
                model.enable_input_require_grads()
    else:
        model.eval().requires_grad_(False)
    return backbone


def save_trained(backbone, out_dir: str | Path) -> None:
    """ResAdapt-RL output: the built-in model, Qwen's full weights, or only the LoRA adapter (peft)."""
    model = backbone.model
    model.save_pretrained(str(out_dir))
    if hasattr(backbone, "processor") and not hasattr(model, "peft_config"):
        backbone.processor.save_pretrained(str(out_dir))
