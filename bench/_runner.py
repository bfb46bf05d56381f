"""Small helpers shared by the benchmark runners (they run in the project venv)."""

from __future__ import annotations

import argparse
from collections.abc import Collection


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
