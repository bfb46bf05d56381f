"""The flights pipeline written by hand in Polars: the baseline of ``bench/flights_e2e.py``.

    .venv/bin/python bench/flights_handwritten.py --data bench/data/flights_x10 --out /tmp/hw

Does exactly the work of ``examples/flights/pipeline.py``, with no framework: it calls the very
same node functions (the pipeline's decorators return them unchanged), runs the same DuckDB SQL
for ``carrier_monthly``, collects every dataset the pipeline persists once, writes it as a
Parquet file (``<out>/<name>.parquet``), reuses the collected frame downstream, drops it after
its last consumer, and finally calls the export sink, which writes the two report CSVs. It runs
the steps one after another; Polars and DuckDB use every core inside each step.

The last line of stdout is one JSON object: ``seconds`` (wall time of the work, excluding the
interpreter start and imports), ``cpu_seconds`` (user + system CPU time of the work),
``max_rss_kib`` (peak RSS of this process, see :func:`peak_rss_kib`), ``ru_maxrss_kib``,
``import_rss_kib`` (peak RSS before the work started), ``steps`` (seconds per dataset),
``phases`` (the same split into ``compute`` and ``write``) and ``rows`` per dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "flights"
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))

import pipeline as flights  # noqa: E402  (examples/flights/pipeline.py)

import headrace as hr  # noqa: E402  (only for the NodeContext that flights_raw takes)

DELAY_THRESHOLD_MIN = 15  # examples/flights/headrace.toml
CARRIER_MONTHLY_SQL: str = flights.pipeline.nodes["carrier_monthly"].sql or ""


def _carrier_monthly(flights_clean: pl.DataFrame, airlines_raw: pl.DataFrame) -> pl.DataFrame:
    """The pipeline's DuckDB SQL over the clean flights and the airlines.

    The frames are registered as LazyFrames, as headrace does: DuckDB then pulls only the
    columns the query reads.
    """
    connection = duckdb.connect()
    try:
        connection.register("flights_clean", flights_clean.lazy())
        connection.register("airlines_raw", airlines_raw.lazy())
        frame: pl.DataFrame = connection.sql(CARRIER_MONTHLY_SQL).pl()
        return frame
    finally:
        connection.close()


def _validated(frame: pl.DataFrame, airlines: pl.DataFrame, out_dir: Path) -> pl.DataFrame:
    """The training table's contract, as the pipeline applies it: valid rows on, bad rows aside.

    The baseline calls the same validation (``hr.validate``) so that this benchmark measures
    orchestration, versioning and records; validation itself has its own benchmark against
    hand-written masks (bench/validation.py).
    """
    checked = hr.validate(frame, flights.TRAINING_ROWS, lookups={"airlines_raw": airlines})
    checked.quarantined.write_parquet(out_dir / "flights_enriched__quarantine.parquet")
    return checked.valid


def _enriched_and_validated(
    airlines: pl.DataFrame, out_dir: Path, *args: Any, **kwargs: Any
) -> pl.DataFrame:
    """flights_enriched, then its contract (the pipeline validates the node's output)."""
    return _validated(flights.flights_enriched(*args, **kwargs).collect(), airlines, out_dir)


def _weather_raw(data: str) -> pl.DataFrame:
    """The weather ingest by hand: the CSV read with the contract's types, then validated."""
    types = {f.name: f.polars_dtype for f in flights.WEATHER_ROWS.fields}
    frame = pl.read_csv(
        Path(data) / "weather.csv",
        null_values="NA",
        schema_overrides={**types, "time_hour": pl.String()},
    ).with_columns(
        pl.col("time_hour").str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_unit="us", time_zone="UTC")
    )
    return hr.validate(frame, flights.WEATHER_ROWS).valid


def _rolled(
    source: pl.DataFrame, keys: list[str], windows: dict[str, list[pl.Expr]], rows: list[pl.Expr]
) -> pl.DataFrame:
    """Hand-written feature view: per key, aggregations over (t - window, t] at every row."""
    data = source.filter(pl.all_horizontal(pl.col(k).is_not_null() for k in [*keys, "time_hour"]))
    data = data.sort([*keys, "time_hour"], maintain_order=True)
    out = data.select(*keys, "time_hour", *rows)
    for window, aggregations in windows.items():
        rolled = data.rolling(
            index_column="time_hour", period=window, closed="right", group_by=keys
        ).agg(aggregations)
        rolled = rolled.sort(keys, maintain_order=True)  # groups come out in any order
        out = out.hstack(rolled.drop(*keys, "time_hour").get_columns())
    return out


def _carrier_delays(flights_clean: pl.DataFrame) -> pl.DataFrame:
    dep, arr = pl.col("dep_delay"), pl.col("arr_delay")
    return _rolled(
        flights_clean,
        ["carrier"],
        {
            "7d": [dep.mean().alias("dep_delay_mean_7d"), dep.std().alias("dep_delay_std_7d")],
            "30d": [arr.mean().alias("arr_delay_mean_30d")],
            "1d": [pl.len().alias("flights_1d"), pl.col("cancelled").sum().alias("c_1d")],
        },
        [],
    )


def _origin_delays(flights_clean: pl.DataFrame) -> pl.DataFrame:
    dep = pl.col("dep_delay")
    return _rolled(
        flights_clean,
        ["origin"],
        {
            "3h": [
                dep.mean().alias("dep_delay_mean_3h"),
                pl.len().alias("flights_3h"),
                pl.col("dest").drop_nulls().n_unique().alias("destinations_3h"),
            ],
            "1d": [dep.max().alias("dep_delay_max_1d")],
        },
        [],
    )


def _plane_history(flights_clean: pl.DataFrame) -> pl.DataFrame:
    return _rolled(
        flights_clean,
        ["tailnum"],
        {
            "30d": [
                pl.len().alias("flights_30d"),
                pl.col("arr_delay").mean().alias("arr_delay_mean_30d"),
                pl.col("distance").sum().alias("miles_30d"),
                pl.col("dest").drop_nulls().last().alias("last_dest"),
            ]
        },
        [],
    )


def _origin_weather(weather_clean: pl.DataFrame) -> pl.DataFrame:
    return _rolled(
        weather_clean,
        ["origin"],
        {"3h": [pl.col("precip").sum().alias("precip_3h")]},
        [pl.col("temp"), pl.col("wind_speed"), pl.col("visib"), (pl.col("precip") > 0).alias("r")],
    )


def run(data_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Run the whole pipeline by hand; returns seconds and rows per step."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = str(data_dir.resolve())
    steps: dict[str, float] = {}
    phases: dict[str, dict[str, float]] = {}
    rows: dict[str, int] = {}

    def persist(
        name: str, compute: Callable[..., pl.LazyFrame | pl.DataFrame], *args: Any, **kwargs: Any
    ) -> pl.DataFrame:
        started = time.perf_counter()
        value = compute(*args, **kwargs)
        frame = value.collect() if isinstance(value, pl.LazyFrame) else value
        computed = time.perf_counter()
        frame.write_parquet(out_dir / f"{name}.parquet")
        ended = time.perf_counter()
        steps[name] = ended - started
        phases[name] = {"compute": computed - started, "write": ended - computed}
        rows[name] = frame.height
        return frame

    context = hr.NodeContext(run_id="handwritten", node="flights_raw")
    flights_raw = persist("flights_raw", flights.flights_raw, data, context)
    weather_raw = persist("weather_raw", _weather_raw, data)
    planes_raw = persist("planes_raw", flights.planes_raw, data)
    airlines_raw = persist("airlines_raw", flights.airlines_raw, data)
    airports_raw = flights.airports_raw(data)  # ephemeral in the pipeline: stays lazy

    flights_clean = persist("flights_clean", flights.flights_clean, flights_raw.lazy())
    del flights_raw  # each frame is dropped after its last consumer, as headrace does
    weather_clean = persist("weather_clean", flights.weather_clean, weather_raw.lazy())
    del weather_raw
    planes_clean = persist("planes_clean", flights.planes_clean, planes_raw.lazy())
    del planes_raw

    flights_enriched = persist(
        "flights_enriched",
        partial(_enriched_and_validated, airlines_raw, out_dir),
        flights_clean.lazy(),
        weather_clean.lazy(),
        planes_clean.lazy(),
        airlines_raw.lazy(),
        airports_raw,
        delay_threshold_min=DELAY_THRESHOLD_MIN,  # config values are keyword arguments
    )
    carrier_monthly = persist("carrier_monthly", _carrier_monthly, flights_clean, airlines_raw)
    persist("carrier_delays", _carrier_delays, flights_clean)
    persist("origin_delays", _origin_delays, flights_clean)
    persist("plane_history", _plane_history, flights_clean)
    persist("origin_weather", _origin_weather, weather_clean)
    del flights_clean, weather_clean, planes_clean, airlines_raw

    delay_by_weather = persist(
        "delay_by_weather", flights.delay_by_weather, flights_enriched.lazy()
    )
    started = time.perf_counter()
    flights.export_training_entities(flights_enriched.lazy(), str(out_dir.resolve()))
    steps["export_training_entities"] = time.perf_counter() - started
    del flights_enriched

    started = time.perf_counter()
    flights.export_reports(carrier_monthly, delay_by_weather, str(out_dir.resolve()))
    steps["export_reports"] = time.perf_counter() - started
    return {"steps": steps, "phases": phases, "rows": rows}


def peak_rss_kib() -> int:
    """Peak RSS of this process in KiB: ``VmHWM`` on Linux, else ``ru_maxrss``.

    ``ru_maxrss`` of a child also carries the high-water mark its parent had when it forked
    (Linux keeps it across ``exec``), so a child of a big parent can report the parent's peak.
    ``VmHWM`` belongs to the process's own address space, which ``exec`` starts afresh.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with the CSVs")
    parser.add_argument("--out", type=Path, required=True, help="folder for the Parquet files")
    args = parser.parse_args(argv)
    import_rss = peak_rss_kib()
    cpu = _cpu_seconds()
    started = time.perf_counter()
    detail = run(args.data, args.out)
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu
    result = {
        "side": "handwritten",
        "seconds": seconds,
        "cpu_seconds": cpu,
        "max_rss_kib": peak_rss_kib(),
        "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "import_rss_kib": import_rss,
        "loadavg_1m": os.getloadavg()[0],
        **detail,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
