"""The ``resadapt`` command: use a registered Allocator on a video, and manage and audit the model registry."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from resadapt.config import PROMPT_STYLES, ParamsError, load_params
from resadapt.rewards.score import TASKS
from resadapt.stage import TELEMETRY_OFF

EPILOG = """examples:
  resadapt allocate video.mp4 "Which stripe orientation is shown in the frame with the red border?"
  resadapt allocate video.mp4 "..." --model allocator@prod --budget 0.1 --json --save-frames out/
  resadapt answer video.mp4 "..." --options horizontal,vertical,diagonal-up,diagonal-down
  resadapt register --stage prod      # after `dvc repro` and `git commit`
  resadapt models                     # registered versions with their lineage
  resadapt audit                      # experiments vs champion and baseline, models vs the one replaced
  resadapt import train.parquet data/mine/manifest.jsonl   # the reference's parquet or Video-R1 JSON(L)
  resadapt benchmark --model allocator@prod --tasks videomme --budgets 0.1,0.25 --frames 32   # [lmms] extra
"""


def _budget(text: str) -> float:
    """A retention budget: a number in (0, 1] (nan, 0, negatives and values above 1 mean nothing here)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give a retention in (0, 1], e.g. 0.15") from None
    if not 0 < value <= 1:  # also false for nan
        raise argparse.ArgumentTypeError(f"{text} is outside (0, 1]: the retention is a share of the full clip's "
                                         "visual tokens, e.g. 0.15")
    return value


def _package(args):
    from resadapt.inference import open_package

    return open_package(args.model, args.params)


def cmd_allocate(args) -> None:
    from resadapt.inference import answer, save_frames

    pkg = _package(args)
    options = tuple(o.strip() for o in args.options.split(",")) if getattr(args, "options", None) else ()
    task = getattr(args, "task", None) or ("mcq" if options or args.command == "allocate" else "open")
    allocation = pkg.allocate(args.video, args.question, args.budget, options, task)
    result = {"video": str(args.video), "question": args.question, **allocation.as_dict()}
    if args.command == "answer":
        if pkg.builtin and (task not in ("mcq", "grounding") or args.prompt != "plain"):
            raise SystemExit("resadapt: error: the built-in backbone answers multiple choice (--options) or "
                             "grounding (--task grounding) questions, in one token (--prompt plain)")
        result["answer"] = answer(pkg.backbone(args.device), allocation, args.question, options, task, args.prompt)
    if args.save_frames:
        result["saved_frames"] = [str(p) for p in save_frames(allocation, args.save_frames)]
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.video}: {len(result['frames'])} frames, {result['tokens']} of {result['full_tokens']} visual "
          f"tokens (retention {result['retention']:.1%})")
    print(f"{'frame':>5} {'time s':>7} {'scale':>6} {'size':>9} {'tokens':>6}")
    for f in result["frames"]:
        print(f"{f['frame']:>5} {f['time_s']:>7.2f} {f['scale']:>6.3f} {f['size'][1]:>4}x{f['size'][0]:<4} "
              f"{f['chunk_tokens']:>6}")
    if "answer" in result:
        print(f"answer: {result['answer']}")
    if args.save_frames:
        print(f"wrote {len(result['saved_frames'])} frames to {args.save_frames}")


def _budgets(text: str) -> list[float]:
    return [_budget(b) for b in text.split(",") if b.strip()]


def cmd_benchmark(args) -> None:
    from resadapt.lmms.benchmark import run

    model_args = {"allocator": args.model, "backbone": args.backbone, "revision": args.revision,
                  "frames": args.frames, "engine": args.engine, "device": args.device, "dtype": args.dtype,
                  "params": args.params, "batch_size": args.batch_size}
    run(model_args, [t.strip() for t in args.tasks.split(",") if t.strip()], args.budgets, args.out,
        [m.strip() for m in args.methods.split(",") if m.strip()], args.full, args.include_path, args.limit,
        args.metric, builtin_tasks=not args.local_tasks_only)
    print((Path(args.out) / "report.md").read_text(encoding="utf-8"))
    print(f"wrote {args.out}/report.md, pareto.png, pareto.json, metrics.json and responses/")


def cmd_register(args) -> None:
    from resadapt.registry import register

    p = load_params(args.params).register_
    out = register(".", p.name, p.out_dir, stage=args.stage, message=args.message or "")
    print(f"registered {p.name}@{out['version']} on commit {out['commit'][:10]} (tag {out['tag']})"
          + (f"; stage {args.stage} (tag {out['stage_tag']})" if args.stage else ""))


def cmd_promote(args) -> None:
    from resadapt.registry import assign

    p = load_params(args.params).register_
    print(f"assigned {args.stage} to {p.name}@{args.version} (tag {assign('.', p.name, args.version, args.stage)})")


def cmd_models(args) -> None:
    from resadapt.registry import versions

    p = load_params(args.params).register_
    rows = versions(".", p.name)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        print(f"no registered versions of {p.name!r} (after `dvc repro` and a commit: `resadapt register`)")
        return
    for r in rows:
        checks = r["checks"]
        print(f"{p.name}@{r['version']}  stages: {', '.join(r['stages']) or '-'}  commit {r['commit'][:10]}  "
              f"registered {r['registered_at'][:19]} by {r['author']}")
        print(f"    data: shards {r['data'].get('data/shards', '?')[:12]}  manifest "
              f"{r['data'].get('data/validated/manifest.jsonl', '?')[:12]}  params blob {r['params_blob'][:12]}")
        if checks:
            print(f"    at r={checks.get('target_budget')}: ResAdapt − FixedScale "
                  f"{checks.get('resadapt_minus_fixed', float('nan')):+.3f}, ResAdapt − Full "
                  f"{checks.get('resadapt_minus_full', float('nan')):+.3f}, retention "
                  f"{checks.get('resadapt_retention', float('nan')):.3f}")
        print(f"    message: {r['message'].strip()}")


def _describe_diff(d: dict | None, versions: dict[str, str]) -> str:
    """One line of an audit diff: params old → new, code files, data hashes."""
    if d is None:
        return "-"
    at = versions.get(d["commit"])
    params = "; ".join(f"{k} {old!r} → {new!r}" for k, (old, new) in d["params"].items()) or "same"
    data = "; ".join(f"{k} {(old or '-')[:10]} → {(new or '-')[:10]}" for k, (old, new) in d["data"].items()) or "same"
    return (f"{'@' + at + ' ' if at else ''}{d['commit'][:10]}: params: {params}; code: "
            f"{', '.join(d['code']) or 'same'}; data: {data}")


def cmd_audit(args) -> None:
    from resadapt.audit import audit

    p = load_params(args.params).register_
    report = audit(".", p.name)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return
    at = {m["commit"]: m["version"] for m in report["models"]}
    print(f"experiments ({len(report['experiments'])}):")
    for e in report["experiments"]:
        s = e["score"]
        acc = "-" if s.get("accuracy") is None else f"{s['accuracy']:.3f}"
        print(f"  {e['experiment']}  commit {e['commit'][:10]}  {e['created'][:19]}  prefect run "
              f"{e['prefect_run_id'] or '-'}  outcome {e['outcome'] or '-'}")
        print(f"      vs champion {_describe_diff(e['vs_champion'], at)}")
        print(f"      vs baseline {_describe_diff(e['vs_baseline'], at)}")
        print(f"      data: {', '.join(f'{k} {v[:12]}' for k, v in e['data'].items()) or '-'}")
        print(f"      ResAdapt accuracy at r={s.get('target_budget')}: {acc}, gate: {s.get('gate')}")
    print(f"registered {p.name} versions ({len(report['models'])}):")
    for m in report["models"]:
        print(f"  {p.name}@{m['version']}  stages: {', '.join(m['stages']) or '-'}  commit {m['commit'][:10]}  "
              f"prefect run {m['prefect_run_id'] or '-'}  data {m['data'].get('data/shards', '?')[:12]}")
        print(f"      vs replaced {_describe_diff(m['vs_replaced'], at)}")


def cmd_import(args) -> None:
    from resadapt.data.importer import import_manifest, rejects_path

    try:
        out = import_manifest(args.source, args.manifest, args.video_root, args.split)
    except ValueError as exc:  # an unknown format, a file that is no JSON or parquet at all (pyarrow's errors too)
        raise SystemExit(f"resadapt: error: {args.source}: {exc}") from None
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{out['source']}: {out['converted']} of {out['rows']} rows converted to {out['manifest']}")
    for r in out["rejects"]:
        print(f"  line {r['line']} (id {r['id']}): {'; '.join(r['reasons'])}")
    if out["rejects"]:
        print(f"rejected rows: {rejects_path(Path(args.manifest))}")
    if out["outside"]:
        print(f"warning: {len(out['outside'])} video(s) lie outside {Path(args.manifest).parent}/ and keep their "
              "absolute paths (e.g. " + out["outside"][0] + "); validating them needs data.allow_outside: true, "
              "and DVC does not version them", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resadapt", description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("allocate", "per-frame scales, sizes, tokens and retention for a video and a question"),
                       ("answer", "the same, plus the backbone's answer")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("video", help="a video file (decoded as the pipeline decodes)")
        p.add_argument("question")
        p.add_argument("--model", help="a package folder or a registry ref: allocator@prod, allocator@v0.1.0 "
                       "(default: register.out_dir, the workspace's package)")
        p.add_argument("--budget", type=_budget, help="rescale the allocation to this retention, in (0, 1]")
        p.add_argument("--json", action="store_true", help="print JSON for machines")
        p.add_argument("--save-frames", metavar="DIR", help="write the resized frames as PNGs")
        if name == "answer":
            p.add_argument("--options", help="comma-separated options of a multiple-choice question")
            p.add_argument("--task", choices=TASKS, help="default: mcq with --options, else open")
            p.add_argument("--prompt", choices=PROMPT_STYLES, default="plain", help="the instruction (default: plain)")
            p.add_argument("--device", help="backbone device (auto, cpu, cuda, cuda:N; default: the package's)")
        p.set_defaults(func=cmd_allocate)
    text = "lmms-eval tasks at a list of budgets for ResAdapt and FixedScale: one table and a Pareto plot"
    p = sub.add_parser("benchmark", help=text, description=text + " (needs the [lmms] extra; README \"Benchmarks "
                       "with lmms-eval\")")
    p.add_argument("--tasks", required=True, help="comma-separated lmms-eval tasks or groups, e.g. videomme")
    p.add_argument("--budgets", type=_budgets, required=True, help="comma-separated retentions, e.g. 0.1,0.25")
    p.add_argument("--model", help="a package folder or a registry ref (default: register.out_dir)")
    p.add_argument("--methods", default="resadapt,fixed_scale", help="of resadapt, fixed_scale (default: both)")
    p.add_argument("--full", action="store_true", help="also run Full (every frame at scale 1) once")
    p.add_argument("--frames", type=int, help="frames per video (default: the package's shard.n_frames)")
    p.add_argument("--backbone", help="another checkpoint instead of the package's pinned one (folder or hub id)")
    p.add_argument("--revision", help="hub revision of --backbone")
    p.add_argument("--engine", choices=["transformers", "vllm"], help="default: the package's")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N (default: the package's)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="default: the package's")
    p.add_argument("--batch-size", type=int, default=1, help="questions per backbone call (default: 1)")
    p.add_argument("--include-path", help="a folder of local lmms-eval task YAMLs")
    p.add_argument("--local-tasks-only", action="store_true", help="look up tasks in --include-path only (starts "
                   "faster: lmms-eval's own task files are not indexed)")
    p.add_argument("--limit", type=int, help="at most this many questions per task (a quick look)")
    p.add_argument("--metric", help="the task metric to report (default: its first)")
    p.add_argument("--out", default="reports/benchmark", help="output folder (default: %(default)s)")
    p.set_defaults(func=cmd_benchmark)
    p = sub.add_parser("register", help="register the committed package (gate passed) as a new GTO version")
    p.add_argument("--stage", choices=["dev", "staging", "prod"], help="also assign this stage")
    p.add_argument("--message", help="tag message (default: the gate's decision)")
    p.set_defaults(func=cmd_register)
    p = sub.add_parser("promote", help="assign a registry stage to a registered version")
    p.add_argument("version", help="e.g. v0.1.0")
    p.add_argument("--stage", required=True, choices=["dev", "staging", "prod"])
    p.set_defaults(func=cmd_promote)
    p = sub.add_parser("models", help="registered versions with stages, data, params and metrics (audit)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)
    p = sub.add_parser("audit", help="experiments (vs their champion and baseline) and registered models (vs the "
                                      "one they replaced): params, code, data, metrics, Prefect run")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_audit)
    p = sub.add_parser("import", help="convert the reference's verl parquet or Video-R1 JSON/JSONL to a manifest",
                       description="Convert the reference's data (verl-style .parquet, Video-R1-style .json/.jsonl) "
                       "to a manifest; rows that cannot be converted are reported with their line and reason.")
    p.add_argument("source", help="a .parquet, .jsonl or .json file")
    p.add_argument("manifest", help="the manifest to write (video paths become relative to its folder)")
    p.add_argument("--video-root", help="folder that relative video paths start from (default: the source's)")
    p.add_argument("--split", help="the split of every row (default: the row's own split, else train)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_import)
    return parser


def main(argv: list[str] | None = None) -> None:
    from resadapt.data.video import VideoError
    from resadapt.inference import PackageError
    from resadapt.lmms import BenchmarkError
    from resadapt.registry import RegistryError

    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)
    args = build_parser().parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight-loading bars would bury the table
    try:
        args.func(args)
    except (VideoError, PackageError, RegistryError, ParamsError, FileNotFoundError, BenchmarkError) as exc:
        print(f"resadapt: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except BrokenPipeError:  # `resadapt ... | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    main()
