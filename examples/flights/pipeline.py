"""The flights pipeline: NYC 2013 flights joined with weather, planes, airlines and airports.

    sources            clean                 join + derive (contract)     reports
    flights_raw  ->  flights_clean  ->  flights_enriched  ->  delay_by_weather  -> export
    weather_raw  ->  weather_clean  --^                       carrier_monthly (SQL, all flights)
    planes_raw   ->  planes_clean   --^
    airlines_raw, airports_raw      --^
                                         features (point-in-time, per entity)
    flights_clean  ->  carrier_delays, origin_delays, plane_history
    weather_clean  ->  origin_weather                  -> feature set "arrival_delay"

flights_enriched is the training table: it carries a data contract, so flights without a
label (cancelled, diverted) and malformed rows go to flights_enriched__quarantine.
The feature views compute trailing delay statistics per carrier, origin airport and plane,
and the weather at the origin, as of every scheduled departure hour; the feature set
``arrival_delay`` is what an arrival-delay model trains on (``headrace features
training-set``) and is served with (``headrace features get`` / ``headrace serve``).

The flights nodes are partitioned by UTC day of ``time_hour``: ``headrace run --partition
2013-01-05`` recomputes that day only. Each function below is a plain function of frames; the
decorators only register it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import polars as pl
from nycdata import WEATHER_TABLE, csv_path, weather_in_postgres

import headrace as hr
from headrace.core.redaction import redact
from headrace.project.settings import load_settings

HERE = Path(__file__).parent
log = logging.getLogger("flights")
DAYS = hr.DailyPartitions("time_hour", start="2013-01-01", end="2013-12-31")

pipeline = hr.Pipeline("flights", description="NYC 2013 flights, enriched for delay models")


def _dir(value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else HERE / path


# -- sources: read the raw CSVs lazily with explicit schemas ----------------------------------

FLIGHTS_SCHEMA = {
    "year": pl.Int32, "month": pl.Int8, "day": pl.Int8, "dep_time": pl.Int32,
    "sched_dep_time": pl.Int32, "dep_delay": pl.Float64, "arr_time": pl.Int32,
    "sched_arr_time": pl.Int32, "arr_delay": pl.Float64, "carrier": pl.String,
    "flight": pl.Int32, "tailnum": pl.String, "origin": pl.String, "dest": pl.String,
    "air_time": pl.Float64, "distance": pl.Float64, "hour": pl.Int8, "minute": pl.Int8,
    "time_hour": pl.String,
}  # fmt: skip
PLANES_SCHEMA = {
    "tailnum": pl.String, "year": pl.Int32, "type": pl.String, "manufacturer": pl.String,
    "model": pl.String, "engines": pl.Int32, "seats": pl.Int32, "speed": pl.Float64,
    "engine": pl.String,
}  # fmt: skip


def _utc(column: str) -> pl.Expr:
    return pl.col(column).str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_unit="us", time_zone="UTC")


def _scan(data_dir: str, table: str, schema: dict[str, type[pl.DataType]] | None) -> pl.LazyFrame:
    return pl.scan_csv(csv_path(_dir(data_dir), table), schema=schema, null_values="NA")


# In a streaming job (`headrace stream run`) flights_raw is fed by the topic "flights_raw"
# instead: events with the same columns, time_hour already a UTC datetime, at most an hour out
# of order. flights_clean and the three flight feature views then run on each micro-batch.
pipeline.stream(
    "flights_raw",
    event_time="time_hour",
    disorder="1h",
    key="carrier",
    schema={**FLIGHTS_SCHEMA, "time_hour": pl.Datetime("us", "UTC")},
)


@pipeline.source(partitions=DAYS, config=["data_dir"])
def flights_raw(data_dir: str, context: hr.NodeContext) -> pl.LazyFrame:
    """All flights that departed NYC in 2013 (one partition per UTC day)."""
    frame = _scan(data_dir, "flights", FLIGHTS_SCHEMA).with_columns(_utc("time_hour"))
    return frame.filter(context.partition_filter())


# Weather is ingested by a connector, not a function: from PostgreSQL when the server is there
# (nycdata loads the table on first use), else from the CSV. The contract types the columns
# either way, so both paths give the same dataset; unparseable values go to the quarantine.
WEATHER_ROWS = hr.Contract(
    "weather_raw",
    fields=[
        hr.Field("origin", "String", nullable=False),
        *(hr.Field(c, "Int32") for c in ("year", "month", "day", "hour")),
        *(hr.Field(c, "Float64") for c in ("temp", "dewp", "humid", "wind_dir", "wind_speed",
                                           "wind_gust", "precip", "pressure", "visib")),
        hr.Field("time_hour", "Datetime[UTC]", nullable=False),
    ],
    primary_key=["origin", "time_hour"],
)  # fmt: skip
WEATHER_DSN = os.environ.get("FLIGHTS_WEATHER_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")

if weather_in_postgres(WEATHER_DSN):
    pipeline.ingest(
        "weather_raw",
        hr.sql(WEATHER_DSN, table=WEATHER_TABLE),
        contract=WEATHER_ROWS,
        description="Hourly weather at the three NYC airports (PostgreSQL)",
    )
else:
    log.warning(
        "PostgreSQL is not reachable at %s: reading the weather from the CSV file instead",
        redact(WEATHER_DSN) if WEATHER_DSN != "none" else "(disabled)",
    )
    csv_path(_dir(load_settings(HERE).config.get("data_dir", "data")), "weather")
    pipeline.ingest(
        "weather_raw",
        hr.files("{data_dir}/weather.csv"),
        contract=WEATHER_ROWS,
        description="Hourly weather at the three NYC airports (CSV)",
    )


@pipeline.source(config=["data_dir"])
def planes_raw(data_dir: str) -> pl.LazyFrame:
    """Aircraft metadata by tail number."""
    return _scan(data_dir, "planes", PLANES_SCHEMA)


@pipeline.source(config=["data_dir"])
def airlines_raw(data_dir: str) -> pl.LazyFrame:
    """Carrier code to airline name."""
    return _scan(data_dir, "airlines", {"carrier": pl.String, "name": pl.String})


@pipeline.source(config=["data_dir"], ephemeral=True)
def airports_raw(data_dir: str) -> pl.LazyFrame:
    """Airport metadata (only the destination name and time zone are used)."""
    return _scan(data_dir, "airports", None).select(
        pl.col("faa").alias("dest"),
        pl.col("name").alias("dest_name"),
        pl.col("tzone").alias("dest_tzone"),
    )


# -- clean ---------------------------------------------------------------------------------


@pipeline.transform(partitions=DAYS)
def flights_clean(flights_raw: pl.LazyFrame) -> pl.LazyFrame:
    """Typed flights with a cancellation flag and a scheduled departure timestamp."""
    return flights_raw.with_columns(
        cancelled=pl.col("dep_time").is_null(),
        sched_dep=pl.datetime(
            "year", "month", "day", pl.col("sched_dep_time") // 100,
            pl.col("sched_dep_time") % 100, time_zone="America/New_York",
        ).dt.convert_time_zone("UTC"),
        tailnum=pl.col("tailnum").str.strip_chars(),
    ).drop("year", "hour", "minute")  # fmt: skip


@pipeline.transform
def weather_clean(weather_raw: pl.LazyFrame) -> pl.LazyFrame:
    """One weather row per airport and hour (the raw data can repeat an hour)."""
    return (
        weather_raw.sort("origin", "time_hour")
        .unique(subset=["origin", "time_hour"], keep="first", maintain_order=True)
        .select("origin", "time_hour", "temp", "humid", "wind_speed", "wind_gust",
                "precip", "visib")
    )  # fmt: skip


@pipeline.transform
def planes_clean(planes_raw: pl.LazyFrame) -> pl.LazyFrame:
    """Aircraft with their build year renamed, so it cannot clash with the flight year."""
    return planes_raw.select(
        "tailnum",
        pl.col("year").alias("plane_year"),
        "manufacturer",
        "model",
        "engines",
        "seats",
    ).unique(subset=["tailnum"], keep="first", maintain_order=True)


# -- join and derive -----------------------------------------------------------------------

# The training table's contract. Cancelled and diverted flights have no arrival delay (the
# label a delay model learns), and a few tail numbers are malformed: those rows go to the
# flights_enriched__quarantine dataset with their reasons; warnings only lower the score.
TRAINING_ROWS = hr.Contract(
    "flights_enriched",
    owner="data-eng",
    fields=[
        hr.Field("arr_delay", "Float64", nullable=False, description="label: minutes late"),
        hr.Field("tailnum", "String", checks=[hr.checks.matches(r"^N[0-9A-Z]+$")]),
        hr.Field("origin", "String", checks=[hr.checks.isin(["EWR", "JFK", "LGA"])]),
        hr.Field("carrier", "String", checks=[hr.checks.references("airlines_raw")]),
        hr.Field("dep_delay", "Float64", checks=[hr.checks.between(-60, 1500)]),
        hr.Field("speed_mph", "Float64", checks=[hr.checks.between(50, 650, severity="warn")]),
        hr.Field("temp", "Float64", checks=[hr.checks.not_null(severity="warn", mostly=0.99)]),
    ],
    checks=[
        hr.checks.row_count(min=1),
        hr.checks.distribution("arr_delay", "mean", -30, 60),
    ],
)


@pipeline.transform(partitions=DAYS, config=["delay_threshold_min"], contract=TRAINING_ROWS)
def flights_enriched(
    flights_clean: pl.LazyFrame,
    weather_clean: pl.LazyFrame,
    planes_clean: pl.LazyFrame,
    airlines_raw: pl.LazyFrame,
    airports_raw: pl.LazyFrame,
    *,
    delay_threshold_min: int,
) -> pl.LazyFrame:
    """Flights with the weather at departure, the aircraft, the airline and derived columns."""
    return (
        flights_clean.join(weather_clean, on=["origin", "time_hour"], how="left")
        .join(planes_clean, on="tailnum", how="left")
        .join(airlines_raw.rename({"name": "airline"}), on="carrier", how="left")
        .join(airports_raw, on="dest", how="left")
        .with_columns(
            is_delayed=pl.col("dep_delay") > delay_threshold_min,
            speed_mph=pl.col("distance") / (pl.col("air_time") / 60),
            gain_min=pl.col("dep_delay") - pl.col("arr_delay"),
            plane_age=pl.col("time_hour").dt.year() - pl.col("plane_year"),
            route=pl.col("origin") + "-" + pl.col("dest"),
            dep_hour_local=pl.col("sched_dep").dt.convert_time_zone("America/New_York").dt.hour(),
        )
    )


# -- reports -------------------------------------------------------------------------------

pipeline.sql(
    "carrier_monthly",
    """
    SELECT f.carrier,
           any_value(a.name)                                       AS airline,
           date_trunc('month', f.time_hour)                        AS month,
           count(*)                                                AS flights,
           avg(CASE WHEN f.cancelled THEN 1.0 ELSE 0.0 END)        AS cancelled_share,
           avg(f.dep_delay)                                        AS mean_dep_delay,
           quantile_cont(f.dep_delay, 0.9)                         AS p90_dep_delay,
           avg(CASE WHEN f.dep_delay > 15 THEN 1.0 ELSE 0.0 END)   AS delayed_share
    FROM flights_clean AS f
    LEFT JOIN airlines_raw AS a ON a.carrier = f.carrier
    GROUP BY f.carrier, date_trunc('month', f.time_hour)
    ORDER BY f.carrier, month
    """,
    description="Monthly delay and cancellation figures per carrier, all flights (DuckDB SQL)",
)


@pipeline.transform
def delay_by_weather(flights_enriched: pl.LazyFrame) -> pl.LazyFrame:
    """Mean departure delay by visibility band and precipitation."""
    return (
        flights_enriched.filter(~pl.col("cancelled"))
        .with_columns(
            visibility=pl.when(pl.col("visib") < 1).then(pl.lit("<1 mi"))
            .when(pl.col("visib") < 3).then(pl.lit("1-3 mi"))
            .when(pl.col("visib") < 10).then(pl.lit("3-10 mi"))
            .otherwise(pl.lit("10 mi")),
            raining=pl.col("precip") > 0,
        )
        .group_by("visibility", "raining")
        .agg(
            flights=pl.len(),
            mean_dep_delay=pl.col("dep_delay").mean(),
            delayed_share=pl.col("is_delayed").mean(),
        )
        .sort("visibility", "raining")
    )  # fmt: skip


@pipeline.sink(config=["out_dir"])
def export_reports(
    carrier_monthly: pl.DataFrame, delay_by_weather: pl.DataFrame, out_dir: str
) -> None:
    """Write the two reports as CSV files for people to open."""
    folder = _dir(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    carrier_monthly.write_csv(folder / "carrier_monthly.csv")
    delay_by_weather.write_csv(folder / "delay_by_weather.csv")


# -- features ------------------------------------------------------------------------------
# Event time of a flight is its scheduled departure hour (time_hour): a window "as of t"
# covers the flights scheduled in (t - window, t]. A model predicting a flight's arrival delay
# should ask for the features a little before departure (the README uses t = time_hour - 1h),
# so that the flight itself and its hour are not in its own features.

CARRIER = hr.Entity("carrier", ["carrier"], description="An airline (two-letter code)")
AIRPORT = hr.Entity("airport", ["origin"], description="A NYC departure airport")
PLANE = hr.Entity("plane", ["tailnum"], description="An aircraft by tail number")

pipeline.features(
    hr.FeatureView(
        "carrier_delays",
        entity=CARRIER,
        source="flights_clean",
        event_time="time_hour",
        ttl="7d",
        features=[
            hr.Aggregate("dep_delay", "mean", "7d"),
            hr.Aggregate("dep_delay", "stddev", "7d"),
            hr.Aggregate("arr_delay", "mean", "30d"),
            hr.Aggregate(None, "count", "1d", name="flights_1d"),
            hr.Aggregate("cancelled", "sum", "1d", name="cancelled_1d"),
        ],
        description="Trailing delay statistics per airline",
    )
)
pipeline.features(
    hr.FeatureView(
        "origin_delays",
        entity=AIRPORT,
        source="flights_clean",
        event_time="time_hour",
        ttl="1d",
        features=[
            hr.Aggregate("dep_delay", "mean", "3h"),
            hr.Aggregate("dep_delay", "max", "1d"),
            hr.Aggregate(None, "count", "3h", name="flights_3h"),
            hr.Aggregate("dest", "distinct_count", "3h", name="destinations_3h"),
        ],
        description="Congestion at the departure airport",
    )
)
pipeline.features(
    hr.FeatureView(
        "plane_history",
        entity=PLANE,
        source="flights_clean",
        event_time="time_hour",
        ttl="30d",
        features=[
            hr.Aggregate(None, "count", "30d", name="flights_30d"),
            hr.Aggregate("arr_delay", "mean", "30d"),
            hr.Aggregate("distance", "sum", "30d", name="miles_30d"),
            hr.Aggregate("dest", "last", "30d", name="last_dest"),
        ],
        description="Recent use of each aircraft",
    )
)
pipeline.features(
    hr.FeatureView(
        "origin_weather",
        entity=AIRPORT,
        source="weather_clean",
        event_time="time_hour",
        ttl="2h",
        features=[
            hr.Feature("temp", pl.col("temp")),
            hr.Feature("wind_speed", pl.col("wind_speed")),
            hr.Feature("visib", pl.col("visib")),
            hr.Feature("raining", pl.col("precip") > 0),
            hr.Aggregate("precip", "sum", "3h", name="precip_3h"),
        ],
        description="Weather at the departure airport",
    )
)
pipeline.feature_set(
    hr.FeatureSet(
        "arrival_delay",
        [
            "carrier_delays:dep_delay_mean_7d",
            "carrier_delays:dep_delay_stddev_7d",
            "carrier_delays:arr_delay_mean_30d",
            "carrier_delays:flights_1d",
            "carrier_delays:cancelled_1d",
            "origin_delays:dep_delay_mean_3h",
            "origin_delays:dep_delay_max_1d",
            "origin_delays:flights_3h",
            "origin_delays:destinations_3h",
            "plane_history:flights_30d",
            "plane_history:arr_delay_mean_30d",
            "plane_history:miles_30d",
            "origin_weather:temp",
            "origin_weather:wind_speed",
            "origin_weather:visib",
            "origin_weather:raining",
            "origin_weather:precip_3h",
        ],
        description="Features of the arrival-delay model",
    )
)


@pipeline.sink(config=["out_dir"])
def export_training_entities(flights_enriched: pl.LazyFrame, out_dir: str) -> None:
    """Entity rows of the arrival-delay model: keys, feature time (1 h before) and the label."""
    folder = _dir(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    flights_enriched.select(
        "carrier",
        "origin",
        "tailnum",
        event_timestamp=pl.col("time_hour") - pl.duration(hours=1),
        arr_delay=pl.col("arr_delay"),
    ).sink_parquet(folder / "arrival_delay_entities.parquet")
