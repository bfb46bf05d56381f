#!/usr/bin/env python3
"""Create one virtualenv per peer tool for the benchmarks.

Peers: the orchestrators of the overhead benchmark (``prefect``, ``dagster``, ``airflow``,
``hamilton``), the validators of the validation benchmark (``pandera``, ``gx``) and the
feature store of the training-set / online-lookup comparisons (``feast``), the drift
benchmark's peer (``evidently``) and the streaming benchmark's engine (``bytewax``).

Stdlib only. Usage:

    python bench/peers/setup.py                    # all peers
    python bench/peers/setup.py prefect dagster    # a subset
    python bench/peers/setup.py pandera gx         # the validation benchmark's peers
    python bench/peers/setup.py feast              # the feature-store comparisons' peer
    python bench/peers/setup.py bytewax            # the streaming benchmark's peer
    python bench/peers/setup.py --python /path/to/python3.11 --recreate

Each peer gets ``bench/.venvs/<peer>/`` (gitignored) with the stack pinned in
``bench/peers/requirements-<peer>.txt``. A peer that fails to install is
reported with pip's error tail and the script carries on with the others; the
exit code is non-zero if any peer failed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
VENVS = BENCH / ".venvs"
PEERS = (
    "prefect",
    "dagster",
    "airflow",
    "hamilton",
    "pandera",
    "gx",
    "feast",
    "evidently",
    "bytewax",
)


def venv_python(peer: str) -> Path:
    return VENVS / peer / "bin" / "python"


def setup_peer(peer: str, python: str, recreate: bool) -> tuple[bool, str]:
    req = HERE / f"requirements-{peer}.txt"
    if not req.exists():
        return False, f"missing {req}"
    vdir = VENVS / peer
    if recreate and vdir.exists():
        shutil.rmtree(vdir)
    if not venv_python(peer).exists():
        print(f"[{peer}] creating venv {vdir} with {python}", flush=True)
        subprocess.run([python, "-m", "venv", str(vdir)], check=True)
    py = str(venv_python(peer))
    print(f"[{peer}] pip install -r {req.name} (this can take a few minutes)", flush=True)
    t0 = time.monotonic()
    proc = subprocess.run(
        [py, "-m", "pip", "install", "--upgrade", "pip", "-q"],
        check=False,
        capture_output=True,
        text=True,
    )
    proc = subprocess.run(
        [py, "-m", "pip", "install", "-q", "-r", str(req)],
        check=False,
        capture_output=True,
        text=True,
    )
    dt = time.monotonic() - t0
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        return False, f"pip install failed after {dt:.0f}s:\n{tail}"
    # Smoke: import the peer and print its version.
    probe = {
        "prefect": "import prefect; print(prefect.__version__)",
        "dagster": "import dagster; print(dagster.__version__)",
        "airflow": "from importlib.metadata import version; print(version('apache-airflow'))",
        "hamilton": "from importlib.metadata import version; print(version('sf-hamilton'))",
        "pandera": "import pandera.polars, polars; print(pandera.__version__)",
        "gx": "import great_expectations as gx; print(gx.__version__)",
        "feast": "import feast; print(feast.__version__)",
        "evidently": "import evidently; print(evidently.__version__)",
        "bytewax": "import bytewax, importlib.metadata as m; print(m.version('bytewax'))",
    }[peer]
    proc = subprocess.run([py, "-c", probe], check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        return False, f"installed but import failed:\n{tail}"
    return True, f"ok: version {proc.stdout.strip().splitlines()[-1]} ({dt:.0f}s)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("peers", nargs="*", default=list(PEERS), help=f"subset of {', '.join(PEERS)}")
    ap.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter used to create the venvs (default: this one)",
    )
    ap.add_argument("--recreate", action="store_true", help="delete and recreate existing venvs")
    args = ap.parse_args(argv)

    unknown = [p for p in args.peers if p not in PEERS]
    if unknown:
        ap.error(f"unknown peer(s): {', '.join(unknown)}; choose from {', '.join(PEERS)}")
    VENVS.mkdir(parents=True, exist_ok=True)

    failures = 0
    for peer in args.peers:
        ok, msg = setup_peer(peer, args.python, args.recreate)
        print(f"[{peer}] {msg}", flush=True)
        failures += not ok
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
