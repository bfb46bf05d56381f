"""Every OpenLineage event of a real run validates against the official schemas, and says
what happened: starts and ends per node, versions, facets, failures, cache hits."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from openlineage_validation import spec_folder, validate_event

import headrace as hr
from headrace.lineage.events import run_uuid

READINGS = hr.Contract(
    "readings",
    fields=[
        hr.Field("sensor", "String", nullable=False),
        hr.Field("ts", "Datetime[UTC]", nullable=False),
        hr.Field("celsius", "Float64", checks=[hr.checks.between(-60, 60)]),
    ],
)


def _pipeline(inbox: Path) -> hr.Pipeline:
    pipeline = hr.Pipeline("weather")
    pipeline.ingest(
        "readings",
        hr.files(str(inbox / "*.csv")),
        contract=READINGS,
        gate=None,
        description="Raw sensor readings (CSV)",
    )

    @pipeline.transform
    def clean(readings: pl.LazyFrame) -> pl.LazyFrame:
        """Fahrenheit added, sensor renamed."""
        return (
            readings.filter(pl.col("celsius").is_not_null())
            .rename({"sensor": "station"})
            .with_columns(fahrenheit=pl.col("celsius") * 9 / 5 + 32)
            .select("station", "ts", "celsius", "fahrenheit")
        )

    pipeline.sql(
        "daily",
        """
        SELECT station, date_trunc('day', ts) AS day, avg(celsius) AS mean_celsius,
               count(*) AS n
        FROM clean WHERE fahrenheit > -100 GROUP BY station, date_trunc('day', ts)
        """,
        description="Daily mean per station",
    )
    station = hr.Entity("station", ["station"])
    pipeline.features(
        hr.FeatureView(
            "station_stats",
            entity=station,
            source="clean",
            event_time="ts",
            ttl="2d",
            features=[
                hr.Aggregate("celsius", "mean", "1d"),
                hr.Aggregate(None, "count", "1d", name="readings_1d"),
                hr.Feature("hot", pl.col("fahrenheit") > 80),
            ],
        )
    )

    @pipeline.transform
    def explodes(clean: pl.LazyFrame) -> pl.LazyFrame:
        raise RuntimeError("the sensor exploded")

    @pipeline.transform
    def after_explosion(explodes: pl.LazyFrame) -> pl.LazyFrame:
        return explodes

    return pipeline


@pytest.fixture
def run_twice(tmp_path: Path) -> tuple[list[dict[str, Any]], list[hr.RunResult], hr.Project]:
    spec_folder()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.csv").write_text(
        "sensor,ts,celsius\n"
        "s1,2026-01-01T10:00:00Z,20.5\n"
        "s1,2026-01-01T11:00:00Z,21.0\n"
        "s2,2026-01-01T10:00:00Z,\n"
        "s2,2026-01-02T10:00:00Z,99\n",  # out of range: quarantined
        encoding="utf-8",
    )
    pipeline = _pipeline(inbox)
    project = hr.Project.create(tmp_path / "project", name="wx")
    results = [project.run(pipeline, fail_fast=False) for _ in range(2)]
    events_file = project.state_dir / "lineage" / "events.jsonl"
    events = [json.loads(line) for line in events_file.read_text(encoding="utf-8").splitlines()]
    yield events, results, project
    project.close()


def _by(events: list[dict[str, Any]], run_id: str, ns: str) -> list[dict[str, Any]]:
    parent = run_uuid(ns, run_id)
    return [
        e
        for e in events
        if e["run"]["runId"] == parent
        or e["run"]["facets"].get("parent", {}).get("run", {}).get("runId") == parent
    ]


def _end(events: list[dict[str, Any]], job: str) -> dict[str, Any]:
    (found,) = [e for e in events if e["job"]["name"] == job and e["eventType"] != "START"]
    return found


def test_every_event_is_valid_openlineage(run_twice: Any) -> None:
    events, _, _ = run_twice
    assert events
    for event in events:
        validate_event(event)


def test_each_node_starts_and_ends_once_under_the_pipeline_run(run_twice: Any) -> None:
    events, results, _ = run_twice
    ns = "headrace://wx"
    first = _by(events, results[0].run_id, ns)
    counts = Counter((e["job"]["name"], e["eventType"]) for e in first)
    nodes = ["readings", "clean", "daily", "station_stats", "explodes", "after_explosion"]
    for node in nodes:
        assert counts[(f"weather.{node}", "START")] == 1, node
    assert counts[("weather", "START")] == 1
    assert counts[("weather", "FAIL")] == 1  # a node failed, so did the pipeline run
    assert counts[("weather.explodes", "FAIL")] == 1
    assert counts[("weather.after_explosion", "ABORT")] == 1  # never ran: upstream failed
    assert all(counts[(f"weather.{n}", "COMPLETE")] == 1 for n in nodes[:4])
    # deterministic UUIDs from headrace's run id and the task
    end = _end(first, "weather.clean")
    assert end["run"]["runId"] == str(
        uuid.uuid5(uuid.NAMESPACE_URL, f"headrace:{ns}:{results[0].run_id}:clean")
    )
    parent = end["run"]["facets"]["parent"]
    assert parent["job"] == {"namespace": ns, "name": "weather"}
    assert parent["run"]["runId"] == run_uuid(ns, results[0].run_id)
    assert end["job"]["facets"]["jobType"]["integration"] == "HEADRACE"
    assert end["job"]["facets"]["jobType"]["processingType"] == "BATCH"
    assert "readings.filter" in end["job"]["facets"]["sourceCode"]["sourceCode"]
    # the failure says what happened
    failed = _end(first, "weather.explodes")
    error = failed["run"]["facets"]["errorMessage"]
    assert "the sensor exploded" in error["message"]
    assert "Traceback" in error["stackTrace"]
    pipeline_end = _end(first, "weather")
    assert "explodes" in pipeline_end["run"]["facets"]["errorMessage"]["message"]


def test_inputs_and_outputs_carry_versions_schema_and_quality(run_twice: Any) -> None:
    events, results, project = run_twice
    first = _by(events, results[0].run_id, "headrace://wx")
    ingest = _end(first, "weather.readings")
    (source,) = ingest["inputs"]
    assert source["namespace"] == "file"
    assert source["name"].endswith("inbox/*.csv")
    readings, quarantine = ingest["outputs"]
    version = project.dataset_version("readings").version
    assert readings["facets"]["version"]["datasetVersion"] == str(version)
    assert [f["name"] for f in readings["facets"]["schema"]["fields"]][:3] == [
        "sensor",
        "ts",
        "celsius",
    ]
    assertions = readings["facets"]["dataQualityAssertions"]["assertions"]
    between = next(a for a in assertions if a["assertion"] == "between")
    assert between["column"] == "celsius"
    assert between["success"] is False  # one reading of 99 degrees
    assert any(a["assertion"] == "quality_score" for a in assertions)
    assert quarantine["name"] == "readings__quarantine"
    assert quarantine["outputFacets"]["outputStatistics"]["rowCount"] == 1
    metrics = readings["facets"]["dataQualityMetrics"]
    assert metrics["rowCount"] == 3
    assert metrics["columnMetrics"]["celsius"] == {"nullCount": 1, "min": 20.5, "max": 21.0}

    clean = _end(first, "weather.clean")
    (read,) = clean["inputs"]
    assert (read["name"], read["facets"]["version"]["datasetVersion"]) == (
        "readings",
        str(version),
    )


def test_column_lineage_of_python_sql_ingest_and_feature_nodes(run_twice: Any) -> None:
    events, results, _ = run_twice
    first = _by(events, results[0].run_id, "headrace://wx")

    def lineage(job: str) -> dict[str, set[tuple[str, str, str]]]:
        facet = _end(first, job)["outputs"][0]["facets"]["columnLineage"]
        return {
            column: {
                (i["name"], i["field"], i["transformations"][0]["subtype"])
                for i in spec["inputFields"]
            }
            for column, spec in facet["fields"].items()
        }

    assert lineage("weather.clean") == {
        "station": {("readings", "sensor", "IDENTITY")},
        "ts": {("readings", "ts", "IDENTITY")},
        "celsius": {("readings", "celsius", "IDENTITY")},
        "fahrenheit": {("readings", "celsius", "TRANSFORMATION")},
    }
    assert lineage("weather.daily") == {
        "station": {("clean", "station", "IDENTITY")},
        "day": {("clean", "ts", "TRANSFORMATION")},
        "mean_celsius": {("clean", "celsius", "AGGREGATION")},
    }
    daily_scope = _end(first, "weather.daily")["outputs"][0]["facets"]["columnLineage"]
    assert {(d["field"], d["transformations"][0]["subtype"]) for d in daily_scope["dataset"]} >= {
        ("fahrenheit", "FILTER"),
        ("station", "GROUP_BY"),
    }
    features = lineage("weather.station_stats")
    assert features["celsius_mean_1d"] == {("clean", "celsius", "AGGREGATION")}
    assert features["hot"] == {("clean", "fahrenheit", "TRANSFORMATION")}
    assert "readings_1d" not in features  # a row count reads no column
    ingest = lineage("weather.readings")
    assert {src for deps in ingest.values() for src, _, _ in deps} == {
        _end(first, "weather.readings")["inputs"][0]["name"]
    }


def test_a_cache_hit_is_a_complete_at_the_stored_version(run_twice: Any) -> None:
    events, results, _ = run_twice
    first = _by(events, results[0].run_id, "headrace://wx")
    second = _by(events, results[1].run_id, "headrace://wx")
    assert results[1].record("daily").cache_hit
    hit = _end(second, "weather.daily")
    assert hit["eventType"] == "COMPLETE"
    tags = {t["key"]: t["value"] for t in hit["run"]["facets"]["tags"]["tags"]}
    assert tags["cache"] == "hit"
    assert tags["status"] == "cached"
    (output,) = hit["outputs"]
    before = _end(first, "weather.daily")["outputs"][0]
    assert output["facets"]["version"] == before["facets"]["version"]
    assert "outputStatistics" not in output.get("outputFacets", {})
    assert "dataQualityMetrics" not in output["facets"]


def test_the_validator_rejects_what_the_schemas_reject(run_twice: Any) -> None:
    from jsonschema import ValidationError

    events, results, _ = run_twice
    first = _by(events, results[0].run_id, "headrace://wx")
    good = _end(first, "weather.readings")
    validate_event(good)
    bad_metrics = json.loads(json.dumps(good))
    bad_metrics["outputs"][0]["facets"]["dataQualityMetrics"]["rowCount"] = "three"
    bad_uuid = json.loads(json.dumps(good)) | {"run": {"runId": "run-1"}}
    bad_lineage = json.loads(json.dumps(_end(first, "weather.clean")))
    del bad_lineage["outputs"][0]["facets"]["columnLineage"]["fields"]["ts"]["inputFields"][0][
        "field"
    ]
    for bad in (bad_metrics, bad_uuid, bad_lineage):
        with pytest.raises(ValidationError):
            validate_event(bad)
