"""Data-parallel CAPO: 2 CPU ranks (gloo) on the tiny setup of test_train, forked by torch.multiprocessing with the
environment torchrun gives its ranks (torchrun itself runs in the pipeline test, through ``train.nproc``); they must
end where one process ends on the same global batch (Allocator and backbone), resume every rank after a kill, and
leave the logs and checkpoints to rank 0."""

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
from resadapt.capo import train
from resadapt.capo.advantage import CapoCoefficients
from resadapt.capo.distributed import Ranks, rank_device, start, stop


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


def _rank(rank: int, out: Path, kill_at: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2")
    rank_main(out, kill_at)


def launch(out: Path, kill_at: int = -1) -> bool:
    """Run the 2 ranks to the end (True), or until one fails, when the other is stopped (False). Forked, the ranks
    start with this process's imports instead of importing torch and transformers again."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        torch.multiprocessing.start_processes(_rank, (out, kill_at, port), nprocs=2, start_method="fork")
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
# presence alike, and the softmax over tokens removes it). They are compared through what they feed instead.
UNSEEN = {"allocator.allocation.3.bias": slice(None), "backbone.glyph_head.2.bias": slice(-1, None)}


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
           if not torch.allclose(expected[k][keep[k]], got[k][keep[k]], atol=1e-5, rtol=0)}
    assert not bad, bad
    for a, b in zip(outputs(expected), outputs(got), strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=0), (a - b).abs().max()


@pytest.mark.slow
def test_two_ranks_end_where_one_process_ends_through_a_kill_and_a_rerun_and_only_rank_0_writes(one_process, tmp_path):
    assert not launch(tmp_path, kill_at=3)  # rank 1 dies at step 3; rank 0 is stopped
    assert not (tmp_path / "rank0.json").exists()
    assert json.loads((tmp_path / "ckpt" / "state.json").read_text())["step"] == 2
    assert launch(tmp_path)
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


def test_shares_cover_the_batch_and_devices_follow_the_local_rank():
    for world in (1, 2, 3):
        shares = [Ranks(r, world).share(7) for r in range(world)]
        assert [i for s in shares for i in s] == list(range(7)) and max(map(len, shares)) - min(map(len, shares)) <= 1
    two = Ranks(1, 4, 1, 2)
    assert rank_device("cpu", two) == "cpu" and rank_device("cuda", two) == "cuda:1"
    with pytest.raises(ValueError, match="names one GPU"):
        rank_device("cuda:0", two)

