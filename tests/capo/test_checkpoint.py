import torch

from resadapt.backbone.qwen import QwenBackbone
from resadapt.backbone.tiny_qwen import build
from resadapt.capo.checkpoint import load_checkpoint, save_checkpoint


def test_a_backbone_with_tied_weights_checkpoints_and_restores(tmp_path):
    """ResAdapt-RL checkpoints the backbone too; Qwen ties lm_head to the embeddings (found on a GPU)."""
    model = QwenBackbone.load(str(build("qwen2_5_vl", tmp_path / "q")), device="cpu").model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.get_input_embeddings().weight.data.add_(1.0)
    save_checkpoint(tmp_path / "ckpt", {"backbone": model}, {"backbone": opt}, 3, [{"step": 0}])
    fresh = QwenBackbone.load(str(tmp_path / "q"), device="cpu").model
    step, history = load_checkpoint(tmp_path / "ckpt", {"backbone": fresh},
                                    {"backbone": torch.optim.AdamW(fresh.parameters(), lr=1e-3)})
    assert step == 3 and history == [{"step": 0}]
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)
