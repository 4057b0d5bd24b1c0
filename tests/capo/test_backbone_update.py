"""ResAdapt-RL's backbone step: token-level PPO by hand, micro-batches equal one batch, LoRA moves only its adapter,
and no forward ever holds more items than the batch params allow."""

import pytest
import torch

from resadapt.backbone.factory import BackboneSpec, LoraSpec, load_qwen
from resadapt.backbone.interface import Item, Query, generate_batched
from resadapt.backbone.tiny_qwen import build
from resadapt.capo.backbone_update import accumulate_token_ppo, backbone_step
from resadapt.capo.losses import ppo_loss
from resadapt.capo.train import LoopConfig


def test_token_level_ppo_against_hand_computed_values():
    # two answers of 3 and 2 tokens; advantages +1 and -2
    logp = torch.tensor([[-1.0, -0.5, -2.0], [-0.1, -3.0, 0.0]])
    old = torch.tensor([[-1.5, -0.5, -1.0], [-0.1, -6.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv = torch.tensor([1.0, -2.0])
    # ρ = exp(logp - old) per valid token: e^0.5 = 1.6487, 1, e^-1 = 0.3679 | 1, e^3 = 20.0855
    # A > 0: min(ρA, clip(ρ, 0.8, 1.28)A) → 1.28, 1.0, 0.3679
    # A < 0: max(min(ρA, clip(ρ)A), 10·A): ρ=1 → -2; ρ=20.09 → min(-40.17, -2.56) = -40.17, dual clip → -20
    expected = -(1.28 + 1.0 + 0.36788 - 2.0 - 20.0) / 5  # token-mean over the 5 valid tokens
    got = ppo_loss(logp, old, adv, mask, 0.2, 0.28, 10.0)
    assert got.item() == pytest.approx(expected, abs=1e-4)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return str(build("qwen2_5_vl", tmp_path_factory.mktemp("q25")))


def qwen(checkpoint, tmp_path, lora=None):
    (tmp_path / "identity.json").write_text("{}")
    spec = BackboneSpec("hf", str(tmp_path), device="cpu", max_new_tokens=3)
    return load_qwen(spec, checkpoint, None, trainable=True, lora=lora, gradient_checkpointing=False)


def items(n=4):
    torch.manual_seed(0)
    frames = torch.randint(0, 256, (4, 56, 56, 3), dtype=torch.uint8)
    return [Item(frames, [1.0, 1.0, 0.5 + 0.1 * i, 0.5], Query(f"Which stripe {i}?", ("a", "b"), "mcq", 2.0))
            for i in range(n)]


def test_micro_batches_give_the_full_batch_loss_and_gradients(checkpoint, tmp_path):
    backbone = qwen(checkpoint, tmp_path)
    batch = items()
    answers = [[[30, 40, 25], [27]], [[33, 33], [29, 29, 29, 29]], [[41], [42, 44]], [[38, 38, 38], [36]]]  # text ids
    advantage = torch.tensor([[1.0, -1.0], [0.5, 0.0], [0.0, 0.0], [-0.3, 2.0]])  # item 3: all 0 (skipped)
    results = []
    for update_batch in (1, 4):
        backbone.model.zero_grad(set_to_none=True)
        loss, _ = accumulate_token_ppo(backbone, batch, answers, advantage, update_batch, 0.2, 0.28, 10.0)
        grads = {n: p.grad.clone() for n, p in backbone.model.named_parameters() if p.grad is not None}
        results.append((loss, grads))
    (loss_1, grads_1), (loss_4, grads_4) = results
    assert loss_1 == pytest.approx(loss_4, abs=1e-5) and grads_1 and grads_1.keys() == grads_4.keys()
    assert all(torch.allclose(grads_1[n], grads_4[n], atol=1e-5) for n in grads_1)
    assert any(g.abs().sum() > 0 for g in grads_1.values())


class Spy:
    """Wraps a backbone: records how many items each generate / scoring call held."""

    def __init__(self, backbone):
        self.inner, self.calls = backbone, []
        self.grid, self.model = backbone.grid, backbone.model

    def generate(self, batch, **kw):
        self.calls.append(("generate", len(batch)))
        return self.inner.generate(batch, **kw)

    def answer_token_logprobs(self, batch, answers):
        self.calls.append(("score", len(batch)))
        return self.inner.answer_token_logprobs(batch, answers)


def test_no_call_holds_more_items_than_rollout_batch_or_update_batch(checkpoint, tmp_path):
    spy = Spy(qwen(checkpoint, tmp_path))
    batch = items(5)
    rollouts = generate_batched(spy, batch, n=2, batch_size=2)
    assert [c for c in spy.calls] == [("generate", 2), ("generate", 2), ("generate", 1)]
    assert len(rollouts.answers) == 5 and rollouts.logprobs.shape == (5, 2)
    spy.calls.clear()
    before = {n: p.detach().clone() for n, p in spy.model.named_parameters()}
    opt = torch.optim.SGD([p for p in spy.model.parameters() if p.requires_grad], lr=0.5)
    scores = torch.tensor([[1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0]])  # one prompt, M·N = 10
    loop = LoopConfig(update_batch=2, ppo_epochs=2)
    backbone_step(spy, opt, batch, rollouts.token_ids, scores, 2, loop)
    assert spy.calls and all(kind == "score" and k <= 2 for kind, k in spy.calls)
    assert len(spy.calls) == 2 * 3  # two epochs over ceil(5 / 2) micro-batches
    assert any(not torch.equal(before[n], p) for n, p in spy.model.named_parameters())  # the weights moved


def test_lora_update_moves_only_the_adapter_and_reloads_identically(checkpoint, tmp_path):
    backbone = qwen(checkpoint, tmp_path, lora=LoraSpec(r=4, alpha=8, dropout=0.0))
    trainable = {n for n, p in backbone.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in backbone.model.named_parameters()}
    batch = items(2)
    rollouts = backbone.generate(batch, n=2)
    opt = torch.optim.SGD([p for p in backbone.model.parameters() if p.requires_grad], lr=1.0)
    backbone_step(backbone, opt, batch, rollouts.token_ids, torch.tensor([[1.0, 0.0, 0.0, 1.0]]), 2, LoopConfig())
    moved = {n for n, p in backbone.model.named_parameters() if not torch.equal(before[n], p)}
    assert moved and moved <= trainable  # the base weights never move
    backbone.model.save_pretrained(str(tmp_path / "trained"))
    backbone.model.eval()
    spec = BackboneSpec("hf", str(tmp_path), device="cpu", max_new_tokens=3, trained=str(tmp_path / "trained"))
    reloaded = load_qwen(spec, checkpoint, None, trainable=False, lora=None, gradient_checkpointing=False)
    assert hasattr(reloaded.model, "peft_config")
    a, b = backbone.generate(batch, greedy=True), reloaded.generate(batch, greedy=True)
    assert a.answers == b.answers
    assert torch.allclose(backbone.answer_logprobs(batch, a.token_ids), reloaded.answer_logprobs(batch, a.token_ids),
                          atol=1e-5)


def test_gradient_checkpointing_gives_the_same_gradients(checkpoint, tmp_path):
    (tmp_path / "identity.json").write_text("{}")
    spec = BackboneSpec("hf", str(tmp_path), device="cpu", max_new_tokens=3)
    batch, answers = items(2), [[[30, 40], [27]], [[33], [29, 29]]]
    advantage = torch.tensor([[1.0, -1.0], [0.5, -0.5]])
    grads = []
    for checkpointing in (False, True):
        backbone = load_qwen(spec, checkpoint, None, trainable=True, lora=None, gradient_checkpointing=checkpointing)
        assert backbone.model.is_gradient_checkpointing == checkpointing
        accumulate_token_ppo(backbone, batch, answers, advantage, 2, 0.2, 0.28, 10.0)
        grads.append({n: p.grad for n, p in backbone.model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and all(torch.allclose(grads[0][n], grads[1][n], atol=1e-5)
                                                      for n in grads[0])
