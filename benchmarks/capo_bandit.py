"""CAPO on the known-answer bandit (issue 16): which loop settings learn where and how much from reward alone.

    PYTHONPATH=$PWD python benchmarks/capo_bandit.py [--variants default spec ...] [--no-similarity] [--jobs 2]
    python benchmarks/capo_bandit.py --quick      # a smoke run: the default, "where" with similarity, 20 steps
    PYTHONPATH=$PWD python benchmarks/capo_bandit.py --stress --jobs 2   # "how much" as the built-in default differs

Each variant is the project's ``train`` defaults (params.yaml) with a few fields changed; every run goes through
``train_allocator``. Prints one markdown row per (variant, mode, checkpoint): the deterministic policy's needed-frame
and other scales, the share of held-out prompts whose needed frames meet their need, |s − need|, corr(s, need),
retention against the oracle's, and whether issue 16's targets are met. ``--out`` also writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from resadapt.capo.bandit import BanditSpec, from_train_params, run_bandit
from resadapt.config import load_params

VARIANTS = {  # name → (train overrides, capo overrides)
    "spec": ({"credit_coef": 0.0}, {"credit": "allocation"}),
    "spec + kappa offset": ({"credit_coef": 0.0, "kappa_floor": "offset"}, {"credit": "allocation"}),
    "capo_frame": ({"credit_coef": 0.0}, {"credit": "capo_frame"}),
    "frame_cost ungated": ({"credit_coef": 0.0}, {"frame_gate": False}),
    "frame_cost": ({"credit_coef": 0.0}, {}),
    "frame_cost + kappa offset": ({"credit_coef": 0.0, "kappa_floor": "offset"}, {}),
    "frame_cost + blame 0.75": ({"credit_coef": 0.0}, {"frame_blame": 0.75}),
    "default": ({}, {}),
    "default, credit 0.1": ({"credit_coef": 0.1}, {}),
    "default, credit 1.0": ({"credit_coef": 1.0}, {}),
}
SIM_MODES, SIM_STEPS, NOSIM_STEPS = ("where", "how_much", "two_frames"), (100, 300), (300, 1000, 2000, 3000)
STRESS = {  # --stress: "how_much" under each way the built-in default differs from the bandit (BanditSpec fields)
    "224-px frames": {"side": 224},  # the default's frames: realised scales step by 1/8
    "16 frames": {"frames": 16},
    "two needed frames": {"needed_frames": 2},  # each at its own need
    "soft answers 0.7/0.35": {"p_hit": 0.7, "p_miss": 0.35},  # the built-in backbone: ~0.87 / ~0.36 on val
    "all, 0.6/0.4": {"side": 224, "frames": 16, "needed_frames": 2, "p_hit": 0.6, "p_miss": 0.4},
}
STRESS_STEPS = (300, 600)
PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"  # the project's train defaults, wherever it runs


def job(args: tuple[str, str, bool, tuple[int, ...], int, str]) -> list[dict]:
    name, mode, similarity, checkpoints, seed, stress = args
    torch.set_num_threads(1)
    train_over, capo_over = VARIANTS[name]
    p = load_params(PARAMS).train
    p = p.model_copy(update={**train_over, "seed": seed, "capo": p.capo.model_copy(update=capo_over)})
    spec = BanditSpec(mode=mode, similarity=similarity, seed=seed, **STRESS.get(stress, {}))
    loop, capo, alloc = from_train_params(p, spec)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rows = run_bandit(spec, loop, capo, alloc, checkpoints, Path(tmp))[0]
    label = name + (f", {stress}" if stress else "") + (f" (seed {seed})" if seed else "")
    return [{"variant": label, "mode": mode, "similarity": similarity, **r} for r in rows]


def fmt(r: dict) -> str:
    corr = "–" if r["corr"] != r["corr"] else f"{r['corr']:.2f}"
    return (f"| {r['variant']} | {r['mode']} | {'yes' if r['similarity'] else 'no'} | {r['step']} | "
            f"{r['needed_scale']:.2f} | {r['other_scale']:.2f} | {r['meets_need']:.0%} | {r['abs_err']:.2f} | {corr} | "
            f"{r['retention']:.1%} / {r['oracle_retention']:.1%} | {r['match_top1']:.0%} | {r['kappa']:.0f} | "
            f"{'**yes**' if r['targets_met'] else 'no'} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--modes", nargs="+", default=list(SIM_MODES), choices=list(SIM_MODES))
    ap.add_argument("--no-similarity", nargs="*", default=["spec", "frame_cost", "frame_cost + blame 0.75", "default"],
                    metavar="VARIANT",
                    help="variants also run without the similarity input ('where', up to 3000 steps)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1],
                    help="bandit and training seeds of the runs without the similarity input")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--quick", action="store_true", help="smoke run: the default variant, 'where', 20 steps")
    ap.add_argument("--stress", action="store_true",
                    help="instead: the default variant's 'how_much' under each of STRESS's changes, 300 and 600 steps")
    args = ap.parse_args()
    if args.quick:
        jobs = [("default", "where", True, (20,), 0, "")]
    elif args.stress:
        jobs = [("default", "how_much", True, STRESS_STEPS, 0, name) for name in STRESS]
    else:
        jobs = [(v, "where", False, NOSIM_STEPS, s, "") for v in args.no_similarity for s in args.seeds]  # longest
        jobs += [(v, m, True, SIM_STEPS, 0, "") for v in args.variants for m in args.modes]
    print("| variant | mode | similarity | step | needed s | others s | meet need | abs err | corr | retention / "
          "oracle | own match top-1 | κ | targets |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    rows = []
    with ProcessPoolExecutor(args.jobs) as pool:
        for result in pool.map(job, jobs):
            rows += result
            for r in result:
                print(fmt(r), flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
