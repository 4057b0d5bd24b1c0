"""Data-parallel CAPO: 2 CPU ranks (gloo) on the tiny setup of test_train, forked by torch.multiprocessing with the
environment torchrun gives its ranks (torchrun itself runs in the pipeline test, through ``train.nproc``); they must
end where one process ends on the same global batch (Allocator and backbone), resume every rank after a kill, and
leave the logs and checkpoints to rank 0; a tiny Qwen's LoRA adapter takes the same backbone step on 2 ranks."""

import json
import os
import signal
import socket
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from resadapt.allocator.model import Allocator
from resadapt.backbone.factory import LoraSpec
from resadapt.backbone.tiny_qwen import build
from resadapt.capo import train
from resadapt.capo.advantage import CapoCoefficients
from resadapt.capo.backbone_update import backbone_step
from resadapt.capo.distributed import Ranks, rank_device, replicate, start, stop


def loop_config():
    from test_train import LOOP  # the fixture module of the one-process tests

    # ResAdapt-RL: the built-in backbone trains too; 3 prompts on 2 ranks give uneven shares (1 and 2)
    return replace(LOOP, steps=4, update_backbone=True, backbone_lr=1e-2)


def weights(allocator, bb) -> dict[str, torch.Tensor]:
    return {**{f"allocator.{k}": v for k, v in allocator.state_dict().items()},
            **{f"backbone.{k}": v for k, v in bb.model.state_dict().items()}}


def rank_main(out: Path, kill_at: int) -> None:
    from test_train import CONFIG, backbone, make_setup

    torch.set_num_threads(1)
    ranks = start("cpu")
    saved, logged = [], []
    write = train.save_checkpoint

    def spy(folder, models, optimizers, step, *rest):  # which rank writes checkpoints
        saved.append(step)
        write(folder, models, optimizers, step, *rest)

    def on_step(step: int) -> None:
        if step == kill_at and ranks.rank == 1:
            os.kill(os.getpid(), signal.SIGKILL)

    train.save_checkpoint = spy
    videos, features = make_setup()
    bb = backbone(cache=False)
    allocator, history = train.train_allocator(loop_config(), CONFIG, CapoCoefficients(), features, videos, bb,
                                               out / "ckpt", log=lambda step, m: logged.append(step), progress=False,
                                               on_step=on_step, ranks=ranks)
    save_file(weights(allocator, bb), str(out / f"rank{ranks.rank}.safetensors"))
    (out / f"rank{ranks.rank}.json").write_text(json.dumps({"saved": saved, "logged": logged, "history": history}))
    stop(ranks)


def _rank(rank: int, port: int, program, *args) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2")
    program(*args)


def launch(program, *args) -> bool:
    """Run ``program(*args)`` on 2 ranks to the end (True), or until one fails, when the other is stopped (False).
    Forked, the ranks start with this process's imports instead of importing torch and transformers again."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        torch.multiprocessing.start_processes(_rank, (port, program, *args), nprocs=2, start_method="fork")
    except torch.multiprocessing.ProcessExitedException:
        return False
    return True


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    from test_train import CONFIG, backbone, make_setup

    videos, features = make_setup()
    bb = backbone(cache=False)
    allocator, history = train.train_allocator(loop_config(), CONFIG, CapoCoefficients(), features, videos, bb,
                                               tmp_path_factory.mktemp("one") / "ckpt", progress=False)
    return weights(allocator, bb), history


# Weights the losses cannot see get gradients of pure rounding noise (~1e-9), which Adam normalises into steps of
# O(lr) that change with any change of summation order, in one process as across ranks: the allocation head's output
# bias (the zero-sum a − mean a removes it) and the built-in backbone's "no glyph" logit bias (it shifts every token's
# presence alike, and the softmax over tokens removes it), and its question-kind head: every question here is a
# "which", whose options no other kind can give, so log P(kind) cancels in the renormalisation over the options up to
# the e⁻³⁰ floor of impossible options (its two replicas drift apart by up to 0.03). They are compared through what
# they feed instead. The word embedding feeds that head too, and its own gradient is at most 2e-5: after 4 Adam steps
# its replicas differ by up to 6e-5 (of weights ~0.8), while everything it computes agrees to 1e-6.
# The attention layers' key biases are unseen the same way (a key bias adds q·b_k to every logit of a query, and the
# softmax removes it); they drifted by up to 3e-4 once L_credit sent the attention states a gradient of their own.
KEY_BIAS = slice(16, 32)  # in_proj_bias = [q; k; v] biases (width 16): a key bias shifts every logit of a query alike
UNSEEN = {"allocator.allocation.3.bias": slice(None), "backbone.glyph_head.2.bias": slice(-1, None),
          "backbone.query_kind.weight": slice(None), "backbone.query_kind.bias": slice(None),
          "allocator.cross.in_proj_bias": KEY_BIAS, "allocator.temporal.layers.0.self_attn.in_proj_bias": KEY_BIAS}
TOLERANCE = {"backbone.word_embedding.weight": 2e-4}


def outputs(w: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """What the weights compute on every video: the Allocator's α, β and the backbone's log-prob of each option."""
    from test_train import CONFIG, T, backbone, make_setup

    videos, features = make_setup()
    allocator, bb = Allocator(CONFIG), backbone(cache=False)
    allocator.load_state_dict({k.removeprefix("allocator."): v for k, v in w.items() if k.startswith("allocator.")})
    bb.model.load_state_dict({k.removeprefix("backbone."): v for k, v in w.items() if k.startswith("backbone.")})
    with torch.no_grad():
        out = allocator(*features.select(list(range(len(videos)))))
        items = train.rollout_items(videos, torch.full((len(videos), 1, T), 0.6))
        logp = bb.answer_logprobs(items, [["A", "B", "C", "D"]] * len(items))
    return [out["alpha"], out["beta"], logp]


def assert_same(expected: dict, got: dict) -> None:
    assert expected.keys() == got.keys()
    keep = {k: torch.ones_like(v, dtype=torch.bool) for k, v in expected.items()}
    for k, where in UNSEEN.items():
        keep[k][where] = False
    bad = {k: (expected[k] - got[k])[keep[k]].abs().max().item() for k in expected
           if not torch.allclose(expected[k][keep[k]], got[k][keep[k]], atol=TOLERANCE.get(k, 1e-5), rtol=0)}
    assert not bad, bad
    for a, b in zip(outputs(expected), outputs(got), strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=0), (a - b).abs().max()


@pytest.mark.slow
def test_two_ranks_end_where_one_process_ends_through_a_kill_and_a_rerun_and_only_rank_0_writes(one_process, tmp_path):
    assert not launch(rank_main, tmp_path, 3)  # rank 1 dies at step 3; rank 0 is stopped
    assert not (tmp_path / "rank0.json").exists()
    assert json.loads((tmp_path / "ckpt" / "state.json").read_text())["step"] == 2
    assert launch(rank_main, tmp_path, -1)
    expected, history = one_process
    for rank in (0, 1):  # every rank resumed, and the replicas stayed in step with one process
        assert_same(expected, load_file(str(tmp_path / f"rank{rank}.safetensors")))
    from test_train import backbone

    start_weights = backbone().model.state_dict()
    assert any(not torch.equal(v, start_weights[k.removeprefix("backbone.")]) for k, v in expected.items()
               if k.startswith("backbone."))  # the backbone did train
    main, other = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert main["saved"] == [4] and main["logged"] == list(range(4))  # 0, 1 replayed from the checkpoint
    assert other["saved"] == other["logged"] == []
    for ours, theirs in zip(main["history"], history, strict=True):  # whole-batch metrics, as one process logs them
        for key in ("reward", "retention", "scale/mean", "kappa/max", "loss/ppo", "loss/total", "loss/backbone"):
            assert ours[key] == pytest.approx(theirs[key], abs=1e-5), key


def lora_step(checkpoint: str, folder: Path, ranks: Ranks) -> dict[str, torch.Tensor]:
    """One ResAdapt-RL backbone step (2 PPO epochs, 1 item per micro-batch) of a tiny Qwen2.5-VL's LoRA adapter on
    this rank's share of 3 prompts × 2 allocations × 2 answers (shares of 2 and 4 items: rank 0 pads)."""
    from test_backbone_update import items, qwen

    torch.set_num_threads(1)
    folder.mkdir()
    torch.manual_seed(0)
    bb = qwen(checkpoint, folder, lora=LoraSpec(r=4, alpha=8, dropout=0.0))
    batch = items(6)
    answers = [[[30, 40, 25], [27]], [[33, 33], [29, 29, 29, 29]], [[41], [42, 44]], [[38, 38, 38], [36]],
               [[31], [32, 33]], [[34, 35], [36]]]  # text token ids
    scores = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0], [1.0, 0.0, 1.0, 0.0]])  # [B, M·N]
    mine = ranks.share(3)
    opt = torch.optim.SGD([p for p in bb.model.parameters() if p.requires_grad], lr=0.5)
    backbone_step(bb, opt, batch[2 * mine.start : 2 * mine.stop], answers[2 * mine.start : 2 * mine.stop],
                  scores[mine.start : mine.stop], 2, train.LoopConfig(update_batch=1, ppo_epochs=2), ranks,
                  replicate(bb.model, ranks, find_unused=True))
    return {n: p.detach().clone() for n, p in bb.model.named_parameters() if p.requires_grad}


def lora_rank(checkpoint: str, out: Path) -> None:
    ranks = start("cpu")
    save_file(lora_step(checkpoint, out / f"id{ranks.rank}", ranks), str(out / f"lora{ranks.rank}.safetensors"))
    stop(ranks)


@pytest.mark.slow
def test_a_lora_adapter_on_qwen_takes_the_same_step_on_two_ranks(tmp_path):
    checkpoint = str(build("qwen2_5_vl", tmp_path / "q25"))
    expected = lora_step(checkpoint, tmp_path / "one", Ranks())
    assert any(v.abs().max() > 0 for k, v in expected.items() if "lora_B" in k)  # B starts at 0: the step moved it
    assert launch(lora_rank, checkpoint, tmp_path)
    for rank in (0, 1):
        got = load_file(str(tmp_path / f"lora{rank}.safetensors"))
        assert got.keys() == expected.keys()
        assert all(torch.allclose(expected[k], got[k], atol=1e-6, rtol=0) for k in expected)


def test_shares_cover_the_batch_and_devices_follow_the_local_rank():
    for world in (1, 2, 3):
        shares = [Ranks(r, world).share(7) for r in range(world)]
        assert [i for s in shares for i in s] == list(range(7)) and max(map(len, shares)) - min(map(len, shares)) <= 1
    two = Ranks(1, 4, 1, 2)
    assert rank_device("cpu", two) == "cpu" and rank_device("cuda", two) == "cuda:1"
    with pytest.raises(ValueError, match="names one GPU"):
        rank_device("cuda:0", two)

