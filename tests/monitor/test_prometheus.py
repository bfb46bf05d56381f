import logging
from typing import Any

import pytest
from _monitor_helpers import ProjectFactory, Receiver, shop_pipeline
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

import headrace as hr
from headrace.monitor import DURATION_BUCKETS

EXPECTED = {
    "headrace_runs": "counter",
    "headrace_run_duration_seconds": "histogram",
    "headrace_pipeline_last_run_timestamp_seconds": "gauge",
    "headrace_pipeline_last_run_duration_seconds": "gauge",
    "headrace_pipeline_last_run_success": "gauge",
    "headrace_pipeline_last_success_timestamp_seconds": "gauge",
    "headrace_node_runs": "counter",
    "headrace_node_duration_seconds": "histogram",
    "headrace_node_rows_in": "counter",
    "headrace_node_rows_out": "counter",
    "headrace_node_output_bytes": "counter",
    "headrace_node_cache_hits": "counter",
    "headrace_node_quarantined_rows": "counter",
    "headrace_node_quality_score": "gauge",
    "headrace_node_throughput_rows_per_second": "gauge",
    "headrace_node_newest_event_timestamp_seconds": "gauge",
    "headrace_node_freshness_seconds": "gauge",
    "headrace_node_last_success_timestamp_seconds": "gauge",
    "headrace_alerts": "counter",
}


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_the_exposition_parses_and_follows_prometheus_conventions(project: hr.Project) -> None:
    project.run(shop_pipeline(bad_rows=1))
    project.run(shop_pipeline(bad_rows=1))
    body, content_type = project.monitor.exposition()
    assert content_type.startswith("text/plain; version=0.0.4")
    text = body.decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {name: f.type for name, f in families.items()} == EXPECTED
    allowed = {"pipeline", "node", "status", "rule", "kind", "severity", "le"}
    for family in families.values():
        assert family.documentation
        for sample in family.samples:
            assert set(sample.labels) <= allowed
    assert "run_id" not in text

    samples = _samples(text)
    assert _value(samples, "headrace_runs_total", pipeline="shop", status="succeeded") == 2
    assert _value(samples, "headrace_run_duration_seconds_count", pipeline="shop") == 2
    buckets = [
        float(s.labels["le"])
        for s in families["headrace_run_duration_seconds"].samples
        if s.name.endswith("_bucket")
    ]
    assert buckets == [*DURATION_BUCKETS, float("inf")]
    node = {"pipeline": "shop", "node": "clean"}
    assert _value(samples, "headrace_node_runs_total", status="succeeded", **node) == 1
    assert _value(samples, "headrace_node_runs_total", status="cached", **node) == 1
    assert _value(samples, "headrace_node_rows_in_total", **node) == 5  # the cache hit read none
    assert _value(samples, "headrace_node_rows_out_total", **node) == 4
    assert _value(samples, "headrace_node_cache_hits_total", **node) == 1
    assert _value(samples, "headrace_node_quarantined_rows_total", **node) == 1
    assert _value(samples, "headrace_node_quality_score", **node) == pytest.approx(0.8)
    assert _value(samples, "headrace_node_duration_seconds_count", **node) == 1  # no cache hit
    orders = {"pipeline": "shop", "node": "orders"}
    assert _value(samples, "headrace_node_freshness_seconds", **orders) > 0
    assert _value(samples, "headrace_pipeline_last_run_success", pipeline="shop") == 1
    alert = {"pipeline": "shop", "rule": "quality below 0.9", "kind": "quality"}
    assert _value(samples, "headrace_alerts_total", severity="warning", **alert) == 1


def test_openmetrics_when_the_scraper_asks_for_it(project: hr.Project) -> None:
    project.run(shop_pipeline())
    body, content_type = project.monitor.exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    names = {f.name for f in openmetrics_families(body.decode())}
    assert {"headrace_runs", "headrace_node_duration_seconds"} <= names


def test_an_empty_project_exposes_valid_empty_families(project: hr.Project) -> None:
    body, _ = project.monitor.exposition()
    families = list(text_string_to_metric_families(body.decode()))
    assert {f.name for f in families} == set(EXPECTED)
    assert all(not f.samples for f in families)


def test_batch_runs_push_to_the_pushgateway(
    make_project: ProjectFactory, receiver: Receiver
) -> None:
    project = make_project(f'[metrics]\npushgateway = "{receiver.url}"\n')
    project.run(shop_pipeline())
    project.run(shop_pipeline(name="other"))
    first, second = receiver.requests
    assert (first.method, first.path) == ("PUT", "/metrics/job/headrace/pipeline/shop")
    assert (second.method, second.path) == ("PUT", "/metrics/job/headrace/pipeline/other")
    samples = _samples(first.body.decode())
    assert _value(samples, "headrace_runs_total", pipeline="shop", status="succeeded") == 1
    assert {dict(labels).get("pipeline") for _, labels in samples} == {"shop"}
    other = _samples(second.body.decode())
    assert {dict(labels).get("pipeline") for _, labels in other} == {"other"}


def test_pushgateway_credentials_go_as_basic_auth_and_failures_never_fail_the_run(
    make_project: ProjectFactory, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    port = receiver.url.rsplit(":", 1)[1]
    project = make_project(
        f'[metrics]\npushgateway = "http://pusher:hunter2@127.0.0.1:{port}"\njob = "nightly"\n'
    )
    receiver.statuses = [500]
    with caplog.at_level(logging.WARNING):
        assert project.run(shop_pipeline()).ok
    (request,) = receiver.requests
    assert request.path == "/metrics/job/nightly/pipeline/shop"
    assert request.headers["Authorization"].startswith("Basic ")
    assert "Pushgateway" in caplog.text
    assert "hunter2" not in caplog.text
