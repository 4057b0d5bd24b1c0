"""What every stage script shares: a ``--params`` option, quiet telemetry, and user errors as one clear line."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

from resadapt.config import Params, ParamsError, load_params

# Pipeline machines may be offline: no usage reporting from DVC or Prefect.
TELEMETRY_OFF = {"DVC_NO_ANALYTICS": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


class StageError(Exception):
    """A failure the user can act on; the stage prints it without a traceback."""


def run_stage(name: str, doc: str, body: Callable[[Params, argparse.Namespace], None],
              add_args: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"stages/{name}.py", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    if add_args:
        add_args(parser)
    args = parser.parse_args()
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)
    start = time.perf_counter()
    try:
        body(load_params(args.params), args)
    except (ParamsError, StageError) as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        sys.exit(1)
    print(f"{name}: done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
