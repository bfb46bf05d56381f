"""Shared, stdlib-only helpers for the per-peer overhead scripts.

Each ``overhead_<peer>.py`` runs inside that peer's own venv
(``bench/.venvs/<peer>``) and prints exactly one JSON line on stdout, last.
While the peer runs, file descriptor 1 is pointed at stderr so that whatever
the peer (or a subprocess it spawns, like Prefect's ephemeral API server)
logs to stdout cannot corrupt the JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

SHAPES = ("chain", "fanout")


def parse_args(tool: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=f"Per-node orchestration overhead: {tool}")
    ap.add_argument("--nodes", type=int, default=1000, help="number of no-op nodes (default 1000)")
    ap.add_argument("--shape", choices=SHAPES, default="chain")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats; the median is reported")
    args = ap.parse_args()
    if args.nodes < 2:
        ap.error("--nodes must be >= 2")
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    return args


def upstream_of(i: int, shape: str) -> int | None:
    """Index of node i's single upstream node, or None for the root."""
    if i == 0:
        return None
    return i - 1 if shape == "chain" else 0


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Redirect fd 1 (and sys.stdout) to stderr for the duration."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    old = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)
        sys.stdout = old


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """(wall seconds, result) of fn(*args, **kwargs), after a gc pass."""
    gc.collect()
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def emit(
    *,
    tool: str,
    version: str,
    shape: str,
    nodes: int,
    run_seconds: list[float],
    build_seconds: list[float] | None = None,
    **extra: Any,
) -> None:
    med = statistics.median(run_seconds)
    rec: dict[str, Any] = {
        "tool": tool,
        "version": version,
        "shape": shape,
        "nodes": nodes,
        "repeats": len(run_seconds),
        "run_seconds": [round(s, 6) for s in run_seconds],
        "per_node_ms": round(med / nodes * 1000.0, 6),
    }
    if build_seconds is not None:
        rec["build_seconds"] = [round(s, 6) for s in build_seconds]
    rec.update(extra)
    sys.stdout.write(json.dumps(rec) + "\n")
    sys.stdout.flush()
