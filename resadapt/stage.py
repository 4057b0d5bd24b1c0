"""What every stage script shares: a ``--params`` option, quiet telemetry, and any failure as one clear line.

A stage's errors name the file, row or key at fault (the library's exceptions carry that); ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

from resadapt.config import Params, ParamsError, load_params

# Pipeline machines may be offline: no usage reporting from DVC or Prefect.
TELEMETRY_OFF = {"DVC_NO_ANALYTICS": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def quiet_telemetry() -> None:
    """TELEMETRY_OFF for this process and its children, where the environment does not say otherwise. Call it
    before Prefect is imported: Prefect reads its settings then, and a temporary server it starts inherits them."""
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)


def prefect_defaults() -> None:
    """quiet_telemetry, and 90 s instead of Prefect's 20 for its temporary server (a run without PREFECT_API_URL) to
    start, which a busy machine needs. Call it before Prefect is imported."""
    quiet_telemetry()
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


class StageError(Exception):
    """A failure the user can act on; the stage prints it without a traceback."""


def describe(exc: BaseException) -> str:
    """The one line a user reads: the message for our own errors, the type as well for anything else."""
    if isinstance(exc, ParamsError | StageError):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    text = str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc).strip() or "(no message)"
    return text if type(exc).__module__.startswith("resadapt") else f"{type(exc).__name__}: {text}"


def run_stage(name: str, doc: str, body: Callable[[Params, argparse.Namespace], None],
              add_args: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"stages/{name}.py", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    if add_args:
        add_args(parser)
    args = parser.parse_args()
    quiet_telemetry()
    start = time.perf_counter()
    try:
        body(load_params(args.params), args)
    except Exception as exc:
        if args.debug:
            raise
        hint = "" if isinstance(exc, ParamsError | StageError) else " (--debug shows the traceback)"
        print(f"{name}: error: {describe(exc)}{hint}", file=sys.stderr)
        sys.exit(1)
    print(f"{name}: done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
