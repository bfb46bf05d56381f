#!/usr/bin/env python3
"""Set up and run headrace from a fresh clone, with nothing but Python >= 3.11.

    python3 dev.py example   # set up, then run the flights example end to end (embedded)
    python3 dev.py test      # set up, then lint, type-check and run the whole test suite

Setup makes a virtual environment in .venv and installs headrace into it (editable, with the
dev extras); it is redone only when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
STAMP = VENV / ".headrace-setup"


def run(*args: str | Path, **env: str) -> None:
    """Run a command in the repository; exit with its code if it fails."""
    print("+", " ".join(str(a) for a in args), flush=True)
    result = subprocess.run(
        [str(a) for a in args], cwd=ROOT, env={**os.environ, **env}, check=False
    )
    if result.returncode != 0:
        sys.exit(result.returncode)


def setup() -> None:
    """Create .venv and install headrace[dev] (again only when pyproject.toml changed)."""
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted and PYTHON.exists():
        return
    if not PYTHON.exists():
        print(f"creating virtual environment {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PYTHON, "-m", "pip", "install", "--quiet", "-e", ".[dev]")
    STAMP.write_text(wanted)


AS_OF = "2013-12-30T23:30:00"
"""The flights data ends in 2013: the example materialises and looks up features as of then."""


def example() -> None:
    """Run the flights example end to end, then list its datasets."""
    project = ROOT / "examples" / "flights"
    headrace = (BIN / "headrace", "--project", project)
    run(*headrace, "run")
    run(*headrace, "datasets")
    out = project / "out"
    run(
        *headrace,
        "features",
        "training-set",
        out / "arrival_delay_entities.parquet",
        "--feature-set",
        "arrival_delay",
        "--out",
        out / "arrival_delay_training.parquet",
    )
    run(*headrace, "features", "materialize", "--as-of", AS_OF)
    run(
        *headrace,
        "features",
        "get",
        "carrier=UA",
        "origin=EWR",
        "tailnum=N14228",
        "--feature-set",
        "arrival_delay",
        "--as-of",
        AS_OF,
    )
    print(f"\nreports and the training set written to {out}")
    print(f"next: .venv/bin/headrace --project {project.relative_to(ROOT)} runs")


def test() -> None:
    """Lint, type-check, check layers, run the tests and the benchmarks at smoke size."""
    run(BIN / "ruff", "check", "src", "tests", "bench", "examples", "dev.py")
    run(BIN / "ruff", "format", "--check", "src", "tests", "bench", "examples", "dev.py")
    run(BIN / "mypy")
    run(BIN / "lint-imports")
    run(PYTHON, "-m", "pytest", "--doctest-modules", "src/headrace", "tests", *sys.argv[2:])
    run(PYTHON, "bench/overhead.py", "--smoke")
    run(PYTHON, "bench/flights_e2e.py", "--smoke")
    run(PYTHON, "bench/lineage_overhead.py", "--smoke")
    run(PYTHON, "bench/validation.py", "--smoke")
    run(PYTHON, "bench/ingest_files.py", "--smoke")
    run(PYTHON, "bench/ingest_db.py", "--smoke")
    run(PYTHON, "bench/online.py", "--smoke")
    run(PYTHON, "bench/training_set.py", "--smoke")
    run(PYTHON, "bench/drift.py", "--smoke")
    run(PYTHON, "bench/stream.py", "--smoke")
    # Kafka (tansu) and NATS cases need the services CI has; elsewhere only the embedded log
    brokers = "log,kafka,nats" if os.environ.get("HEADRACE_REQUIRE_SERVICES") == "1" else "log"
    run(PYTHON, "bench/stream_brokers.py", "--smoke", "--cases", brokers)


COMMANDS = {"example": example, "test": test, "setup": lambda: None}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: python3 dev.py {{{'|'.join(COMMANDS)}}} [pytest args...]")
    setup()
    COMMANDS[sys.argv[1]]()
