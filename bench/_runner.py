"""Small helpers shared by the benchmark runners (they run in the project venv)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any


def error_summary(stderr: str, *, causes: int = 4, tail: int = 10) -> str:
    """The exception lines of a child's traceback (root causes included) and its last lines."""
    lines = stderr.strip().splitlines()
    exceptions = [
        line.strip()
        for line in lines
        if line
        and not line.startswith(" ")
        and ("Error" in line or "Exception" in line)
        and ":" in line
    ]
    last = "\n".join(lines[-tail:])
    return "exceptions: " + " <- ".join(exceptions[-causes:]) + f"\nstderr tail:\n{last}"


def parse_peer_repeats(text: str, known: Collection[str]) -> dict[str, int]:
    """``"gx=1,airflow=2"`` -> ``{"gx": 1, "airflow": 2}`` (argparse type)."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, num = part.partition("=")
        if name not in known or not num.isdigit() or int(num) < 1:
            raise argparse.ArgumentTypeError(f"bad --peer-repeats entry {part!r} (want peer=N)")
        out[name] = int(num)
    return out


def fmt(value: float | None, spec: str = ".2f") -> str:
    """A number for a table cell; '-' when missing."""
    return "-" if value is None else format(value, spec)


def run_child(
    cmd: list[str], *, log: Path, timeout: float, cwd: Path | None = None
) -> dict[str, Any]:
    """Run a benchmark child (another venv's interpreter); its last stdout line is JSON.

    Returns that record plus ``subprocess_wall_seconds``, or ``{"error": ...}`` with a summary
    of the child's traceback; the child's full stderr is written to ``log``.
    """
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    started = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, check=False, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s", "cmd": " ".join(cmd)}
    wall = time.monotonic() - started
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(proc.stderr)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    record: dict[str, Any] | None = None
    if lines:
        try:
            record = json.loads(lines[-1])
        except json.JSONDecodeError:
            record = None
    if proc.returncode != 0 or record is None:
        return {
            "error": f"exit {proc.returncode}; {error_summary(proc.stderr)}",
            "cmd": " ".join(cmd),
            "log": str(log),
        }
    record["subprocess_wall_seconds"] = round(wall, 2)
    return record


def chosen_sides(
    ap: argparse.ArgumentParser, args: argparse.Namespace, known: Collection[str]
) -> list[str]:
    """The ``--sides`` of an ingest benchmark, checked (``--smoke``: headrace once at x1)."""
    if args.smoke:
        args.scale, args.repeats, args.sides = 1, 1, "headrace"
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    unknown = [s for s in sides if s not in known]
    if unknown or not sides or args.repeats < 1 or args.scale < 1:
        ap.error(f"--sides: choose from {', '.join(known)}; --repeats and --scale >= 1")
    if args.profile:
        try:
            import pyinstrument  # noqa: F401
        except ImportError:
            ap.error("--profile needs pyinstrument: .venv/bin/pip install pyinstrument")
    return sides
