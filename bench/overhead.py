"""Per-node orchestration overhead: headrace vs. Prefect, Dagster, Airflow, Hamilton.

One command, run with the project venv:

    .venv/bin/python bench/overhead.py                      # N=1000, 3 repeats, all peers
    .venv/bin/python bench/overhead.py --nodes 500 --peers dagster,hamilton
    .venv/bin/python bench/overhead.py --peers none         # headrace only
    .venv/bin/python bench/overhead.py --smoke              # CI: N=50, 1 repeat, no peers

Two DAG shapes of N no-op nodes: ``chain`` (node i reads node i-1) and
``fanout`` (one root, N-1 children reading it). Per-node overhead =
median(run wall time) / N, in milliseconds. DAG construction is timed
separately (``build_seconds``) and not part of the run time; interpreter
start and package imports are excluded, and every tool gets an untimed
warm-up run on a 5-node DAG first.

headrace runs in this process, twice per shape:
  * ``ephemeral``: every node ``ephemeral=True`` -- outputs stay in memory,
    the run record and one node-run record per node are written to the
    project's SQLite metadata store;
  * ``persisted``: every node returns a 1-row Polars DataFrame that is
    committed as a Delta table version, plus the same run/node-run records.
Each repeat gets a brand-new project folder (so nothing is served from cache).

Each peer runs in a subprocess in its own venv under ``bench/.venvs/<peer>``
(create them with ``python bench/peers/setup.py``), via
``bench/peers/overhead_<peer>.py``, which prints one JSON line (the last line
of its stdout). Peers keep their normal run records on; see each script's
docstring for what it records.

The Rich table shows per-node ms and the ratio peer / headrace for the same
shape (against both headrace variants). Results go to
``bench/results/overhead-<date>.json`` (``-smoke`` suffix for ``--smoke``).
Exit status is 1 if the headrace side fails, 0 otherwise (a failing peer is
reported in the table and the JSON, not in the exit status).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _runner import parse_peer_repeats, run_child

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PEERS_DIR = BENCH / "peers"
VENVS = BENCH / ".venvs"
RESULTS = BENCH / "results"
LOGS = RESULTS / "logs"
ALL_PEERS = ("prefect", "dagster", "airflow", "hamilton")
SHAPES = ("chain", "fanout")
TARGET_MS = 0.5  # product brief: headrace <= 0.5 ms per node with run records
WARMUP_NODES = 5
SHORT_RECORDS = {  # what each tool records during the run (details: JSON "records")
    ("headrace", "ephemeral"): "run + node-run records (SQLite)",
    ("headrace", "persisted"): "run + node-run records + a Delta version per node",
    ("prefect", ""): "flow + task runs, logs via ephemeral API (SQLite, async)",
    ("dagster", ""): "run + event log (ephemeral instance), pickled outputs",
    ("airflow", ""): "dag run, task instances, XComs (SQLite metadata DB)",
    ("hamilton", ""): "nothing (in-memory floor)",
}


# --------------------------------------------------------------------------- headrace side


def _import_headrace() -> Any:
    try:
        import headrace
    except ImportError:  # not installed into the venv (yet): use the work tree
        sys.path.insert(0, str(ROOT / "src"))
        import headrace
    return headrace


def _ephemeral_noop(x: Any = None) -> Any:
    return None


def _persisted_noop(x: Any = None) -> Any:
    import polars as pl

    return pl.DataFrame({"x": [1]})


def build_pipeline(hr: Any, n: int, shape: str, variant: str) -> Any:
    """N no-op transforms wired as a chain or a fan-out."""
    ephemeral = variant == "ephemeral"
    fn = _ephemeral_noop if ephemeral else _persisted_noop
    pipeline = hr.Pipeline(f"bench_{shape}_{variant}")
    pipeline.transform(fn, name="n0", ephemeral=ephemeral)
    for i in range(1, n):
        up = f"n{i - 1}" if shape == "chain" else "n0"
        pipeline.transform(fn, name=f"n{i}", inputs={"x": up}, ephemeral=ephemeral)
    return pipeline


def _status_name(status: Any) -> str:
    return str(getattr(status, "value", status)).lower()


def _check_result(result: Any, n: int) -> dict[str, int]:
    status = _status_name(result.status)
    if status not in {"succeeded", "success", "ok", "completed"}:
        raise RuntimeError(f"headrace run {getattr(result, 'run_id', '?')} ended {status!r}")
    counts: dict[str, int] = {}
    # RunResult.records (node-run records, plan order); the brief called it .nodes
    node_results = getattr(result, "records", None)
    if node_results is None:
        node_results = result.nodes
    for node in node_results:
        key = _status_name(getattr(node, "status", "?"))
        counts[key] = counts.get(key, 0) + 1
        if getattr(node, "output_version", None) is not None:
            counts["with_output_version"] = counts.get("with_output_version", 0) + 1
    if counts.get("succeeded") != n:  # all really ran: none cached, skipped or failed
        raise RuntimeError(f"expected {n} succeeded node results, got {counts}")
    return counts


def _timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    gc.collect()
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def run_headrace(n: int, shape: str, variant: str, repeats: int) -> dict[str, Any]:
    hr = _import_headrace()
    build_s: list[float] = []
    run_s: list[float] = []
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="headrace-bench-") as tmp:
        # untimed warm-up: imports, SQLite/Delta first use
        warm = hr.Project.create(Path(tmp) / "warmup")
        _check_result(warm.run(build_pipeline(hr, WARMUP_NODES, shape, variant)), WARMUP_NODES)
        for r in range(repeats):
            bt, pipeline = _timed(build_pipeline, hr, n, shape, variant)
            project = hr.Project.create(Path(tmp) / f"r{r}")  # fresh: no cache hits
            rt, result = _timed(project.run, pipeline)
            counts = _check_result(result, n)
            if variant == "persisted" and counts.get("with_output_version") != n:
                raise RuntimeError(f"expected {n} Delta versions written, got {counts}")
            build_s.append(bt)
            run_s.append(rt)
    med = statistics.median(run_s)
    records = "run + node-run records in SQLite metadata"
    if variant == "persisted":
        records += f" + {n} Delta table versions"
    return {
        "tool": "headrace",
        "variant": variant,
        "version": getattr(hr, "__version__", _dist_version("headrace")),
        "shape": shape,
        "nodes": n,
        "repeats": repeats,
        "run_seconds": [round(s, 6) for s in run_s],
        "build_seconds": [round(s, 6) for s in build_s],
        "per_node_ms": round(med / n * 1000.0, 6),
        "node_statuses": counts,
        "records": records,
    }


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "work tree"


# --------------------------------------------------------------------------- peers


def peer_python(peer: str) -> Path:
    return VENVS / peer / "bin" / "python"


def run_peer(peer: str, n: int, shape: str, repeats: int, timeout: float) -> dict[str, Any]:
    base: dict[str, Any] = {"tool": peer, "variant": "", "shape": shape, "nodes": n}
    py = peer_python(peer)
    if not py.exists():
        return {
            **base,
            "skipped": f"no venv at {py.parent.parent}; run: python bench/peers/setup.py {peer}",
        }
    cmd = [
        str(py),
        str(PEERS_DIR / f"overhead_{peer}.py"),
        "--nodes",
        str(n),
        "--shape",
        shape,
        "--repeats",
        str(repeats),
    ]
    rec = run_child(cmd, log=LOGS / f"{peer}-{shape}-{n}.log", timeout=timeout)
    if "error" in rec:
        return {**base, **rec}
    rec.setdefault("variant", "")
    return rec


# --------------------------------------------------------------------------- report


def _fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def _ratio(peer_ms: float | None, hr_ms: float | None) -> str:
    if peer_ms is None or not hr_ms:
        return "-"
    r = peer_ms / hr_ms
    return f"{r:.3f}x" if r < 0.1 else f"{r:.2f}x" if r < 10 else f"{r:.0f}x"


def add_ratios(rows: list[dict[str, Any]]) -> None:
    hr = {
        (r["shape"], r["variant"]): r.get("per_node_ms")
        for r in rows
        if r["tool"] == "headrace" and "per_node_ms" in r
    }
    for r in rows:
        if "per_node_ms" not in r:
            continue
        for variant in ("ephemeral", "persisted"):
            base = hr.get((r["shape"], variant))
            if base:
                r[f"ratio_vs_headrace_{variant}"] = round(r["per_node_ms"] / base, 3)


def print_table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # piped / CI: don't squeeze the table into 80 columns
        console = Console(width=150)
    hr_rows = [r for r in rows if r["tool"] == "headrace"]
    hr = {(r["shape"], r["variant"]): r.get("per_node_ms") for r in hr_rows}
    table = Table(
        title=(
            f"Per-node orchestration overhead - {meta['nodes']} no-op nodes, "
            f"median of {meta['repeats']} (target: headrace <= {TARGET_MS} ms/node)"
        ),
        caption="ratio = tool ms/node / headrace ms/node, same shape",
    )
    table.add_column("tool")
    table.add_column("version")
    table.add_column("shape")
    table.add_column("ms / node", justify="right")
    table.add_column("vs hr ephemeral", justify="right")
    table.add_column("vs hr persisted", justify="right")
    table.add_column("records kept / note", overflow="fold", max_width=70)
    order = {t: i for i, t in enumerate(("headrace", *ALL_PEERS))}
    for r in sorted(rows, key=lambda r: (SHAPES.index(r["shape"]), order.get(r["tool"], 99))):
        tool = r["tool"] + (f" ({r['variant']})" if r.get("variant") else "")
        ms = r.get("per_node_ms")
        if "skipped" in r:
            note = f"[yellow]skipped: {r['skipped']}[/]"
        elif "error" in r:
            note = f"[red]FAILED: {r['error'].splitlines()[0][:300]}[/]"
        else:
            note = SHORT_RECORDS.get((r["tool"], r.get("variant", "")), r.get("records", ""))
            if r["tool"] == "headrace" and ms is not None:
                mark = "[green]meets[/]" if ms <= TARGET_MS else "[red]misses[/]"
                note = f"{mark} target; {note}"
            if "per_node_ms_with_records" in r:
                note = (
                    f"{note}; {_fmt_ms(r['per_node_ms_with_records'])} ms/node until "
                    "all task-run records are in the DB"
                )
            if r.get("repeats") is not None and r["repeats"] != meta["repeats"]:
                note = f"{r['repeats']} repeat(s); {note}"
        table.add_row(
            tool,
            str(r.get("version", "-")),
            r["shape"],
            _fmt_ms(ms),
            "-" if r["tool"] == "headrace" else _ratio(ms, hr.get((r["shape"], "ephemeral"))),
            "-" if r["tool"] == "headrace" else _ratio(ms, hr.get((r["shape"], "persisted"))),
            note,
        )
    console.print(table)
    for r in rows:
        if "error" in r:
            console.print(f"[red]{r['tool']} {r['shape']} failed:[/]\n{r['error']}")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Per-node orchestration overhead: headrace vs peers.",
        epilog="Peers need their venvs: python bench/peers/setup.py",
    )
    ap.add_argument("--nodes", type=int, default=1000, help="no-op nodes per DAG (default 1000)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats, median reported")
    ap.add_argument(
        "--peers",
        default=",".join(ALL_PEERS),
        help=f"comma list of {','.join(ALL_PEERS)}, or 'none' (default: all)",
    )
    ap.add_argument("--shapes", default=",".join(SHAPES), help="comma list of chain,fanout")
    ap.add_argument(
        "--peer-repeats",
        type=lambda text: parse_peer_repeats(text, ALL_PEERS),
        default={},
        help="per-peer repeat override, e.g. airflow=1 (slow peers)",
    )
    ap.add_argument(
        "--peer-timeout", type=float, default=3600.0, help="seconds per peer subprocess"
    )
    ap.add_argument("--smoke", action="store_true", help="CI check: N=50, 1 repeat, no peers")
    ap.add_argument("--out", type=Path, help="JSON output path (default bench/results/...)")
    args = ap.parse_args(argv)

    if args.smoke:
        args.nodes, args.repeats, args.peers = 50, 1, "none"
    if args.nodes < 2 or args.repeats < 1:
        ap.error("--nodes must be >= 2 and --repeats >= 1")
    peers = [] if args.peers.strip() == "none" else [p.strip() for p in args.peers.split(",")]
    bad = [p for p in peers if p not in ALL_PEERS]
    if bad:
        ap.error(f"unknown peer(s) {bad}; choose from {', '.join(ALL_PEERS)} or 'none'")
    shapes = [s.strip() for s in args.shapes.split(",")]
    if any(s not in SHAPES for s in shapes):
        ap.error(f"--shapes must be from {SHAPES}")

    now = datetime.now(UTC)
    meta: dict[str, Any] = {
        "date": now.isoformat(timespec="seconds"),
        "nodes": args.nodes,
        "repeats": args.repeats,
        "shapes": shapes,
        "peers": peers,
        "smoke": args.smoke,
        "target_ms_per_node": TARGET_MS,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "method": (
            "per_node_ms = median(run_seconds) / nodes; run_seconds excludes interpreter "
            "start, imports, DAG construction (build_seconds) and a 5-node warm-up run"
        ),
    }
    t_start = time.monotonic()
    rows: list[dict[str, Any]] = []
    headrace_failed = False
    for shape in shapes:
        for variant in ("ephemeral", "persisted"):
            print(f"headrace {variant} {shape} n={args.nodes} ...", file=sys.stderr, flush=True)
            try:
                rows.append(run_headrace(args.nodes, shape, variant, args.repeats))
            except Exception as exc:  # report and keep going, exit 1 at the end
                headrace_failed = True
                rows.append(
                    {
                        "tool": "headrace",
                        "variant": variant,
                        "shape": shape,
                        "nodes": args.nodes,
                        "error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}",
                    }
                )
    for peer in peers:
        reps = args.peer_repeats.get(peer, args.repeats)
        for shape in shapes:
            print(f"{peer} {shape} n={args.nodes} x{reps} ...", file=sys.stderr, flush=True)
            rows.append(run_peer(peer, args.nodes, shape, reps, args.peer_timeout))
    add_ratios(rows)
    meta["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    meta["wall_seconds"] = round(time.monotonic() - t_start, 1)
    print_table(rows, meta)

    out = args.out or RESULTS / (
        f"overhead-{now.date().isoformat()}{'-smoke' if args.smoke else ''}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**meta, "results": rows}, indent=2) + "\n")
    print(f"results written to {out}", file=sys.stderr)
    return 1 if headrace_failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
