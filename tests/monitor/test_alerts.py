import json
import logging
import sys
from pathlib import Path

import polars as pl
import pytest
from _monitor_helpers import ProjectFactory, Receiver, shop_pipeline

import headrace as hr
from headrace.monitor import AlertRecord, DriftSignal

FAST_WEBHOOK = 'kind = "webhook"\nretries = 2\nbackoff = 0.01\ntimeout = 5\n'


def test_a_quality_rule_firing_on_a_run_posts_to_a_webhook_retrying_a_500(
    make_project: ProjectFactory, receiver: Receiver
) -> None:
    project = make_project(
        f"""
[[alerts.rules]]
name = "clean quality"
kind = "quality"
threshold = 0.9
nodes = ["clean"]
sinks = ["ops", "log"]

[alerts.sinks.ops]
{FAST_WEBHOOK}url = "{receiver.url}/alerts"
"""
    )
    receiver.statuses = [500]
    result = project.run(shop_pipeline(bad_rows=1))
    assert result.ok

    assert [(r.method, r.path) for r in receiver.requests] == [("POST", "/alerts")] * 2
    assert receiver.requests[0].body == receiver.requests[1].body
    assert receiver.requests[0].headers["Content-Type"] == "application/json"
    body = receiver.requests[1].json()
    assert body["project"] == "shop"
    assert body["rule"] == "clean quality"
    assert body["kind"] == "quality"
    assert body["severity"] == "warning"
    assert body["pipeline"] == "shop"
    assert body["run_id"] == result.run_id
    assert body["node"] == "clean"
    assert body["observed"] == pytest.approx(0.8)
    assert body["threshold"] == 0.9
    assert body["evidence"]["quarantined_rows"] == 1
    assert body["evidence"]["rows"] == 5
    assert body["evidence"]["failed_checks"][0]["rule"] == "amount.not_null"
    assert "deliveries" not in body

    (alert,) = project.alerts()
    assert alert.alert_id == body["alert_id"]
    assert alert.observed == pytest.approx(0.8)
    assert alert.threshold == 0.9
    assert alert.run_id == result.run_id
    assert alert.evidence["quarantine_dataset"] == "clean__quarantine"
    ops, log = alert.deliveries
    assert (ops.sink, ops.kind, ops.ok, ops.attempts) == ("ops", "webhook", True, 2)
    assert (log.sink, log.kind, log.ok) == ("log", "log", True)


def test_a_webhook_that_keeps_failing_is_recorded_as_failed_without_secrets(
    make_project: ProjectFactory, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    project = make_project(
        f"""
[[alerts.rules]]
name = "q"
kind = "quality"
sinks = ["ops"]

[alerts.sinks.ops]
{FAST_WEBHOOK}url = "http://bot:hunter2@127.0.0.1:{receiver.url.rsplit(":", 1)[1]}/hook/s3cr3t"
"""
    )
    receiver.statuses = [503, 503, 503]
    with caplog.at_level(logging.DEBUG, logger="headrace"):
        project.run(shop_pipeline())
    assert len(receiver.requests) == 3  # 1 + retries
    assert receiver.requests[0].headers["Authorization"].startswith("Basic ")
    (alert,) = project.alerts()
    (delivery,) = alert.deliveries
    assert not delivery.ok
    assert delivery.attempts == 3
    assert delivery.error is not None
    assert "HTTP 503 from http://127.0.0.1:" in delivery.error
    shown = caplog.text + json.dumps(alert.to_dict())
    assert "hunter2" not in shown
    assert "s3cr3t" not in shown


def test_a_client_error_is_not_retried(make_project: ProjectFactory, receiver: Receiver) -> None:
    project = make_project(
        f'[[alerts.rules]]\nname = "q"\nkind = "quality"\nsinks = ["ops"]\n'
        f'[alerts.sinks.ops]\n{FAST_WEBHOOK}url = "{receiver.url}/x"\n'
    )
    receiver.statuses = [404]
    project.run(shop_pipeline())
    assert len(receiver.requests) == 1
    (delivery,) = project.alerts()[0].deliveries
    assert (delivery.ok, delivery.attempts, delivery.error) == (
        False,
        1,
        f"HTTP 404 from {receiver.url}/…",
    )


def test_a_command_hook_gets_the_alert_json_on_stdin(
    make_project: ProjectFactory, tmp_path: Path
) -> None:
    out = tmp_path / "hook.json"
    hook = tmp_path / "hook.py"
    hook.write_text(
        f"import sys, pathlib\npathlib.Path({str(out)!r}).write_text(sys.stdin.read())\n"
    )
    project = make_project(
        f"""
[[alerts.rules]]
name = "slow"
kind = "duration"
threshold = 0
sinks = ["hook", "broken"]

[alerts.sinks.hook]
kind = "command"
command = [{json.dumps(sys.executable)}, {json.dumps(str(hook))}]

[alerts.sinks.broken]
kind = "command"
command = [{json.dumps(sys.executable)}, "-c", "import sys; sys.exit('no retraining today')"]
timeout = 20
"""
    )
    result = project.run(shop_pipeline())
    payload = json.loads(out.read_text())
    assert payload["rule"] == "slow"
    assert payload["kind"] == "duration"
    assert payload["run_id"] == result.run_id
    assert payload["observed"] == pytest.approx(result.duration, abs=0.05)
    assert set(payload["evidence"]["slowest_nodes"]) <= {"orders", "clean"}
    hook_delivery, broken = project.alerts()[0].deliveries
    assert (hook_delivery.sink, hook_delivery.ok) == ("hook", True)
    assert not broken.ok
    assert broken.error is not None
    assert "exited with status 1: no retraining today" in broken.error


def test_default_rules_log_a_failed_run_and_low_quality(
    make_project: ProjectFactory, caplog: pytest.LogCaptureFixture
) -> None:
    project = make_project("")
    pipeline = shop_pipeline(bad_rows=3)

    @pipeline.transform
    def boom(clean: pl.DataFrame) -> pl.DataFrame:
        raise RuntimeError("password=hunter2 rejected")

    with caplog.at_level(logging.INFO, logger="headrace.alerts"):
        result = project.run(pipeline)
    assert not result.ok
    by_rule = {a.rule: a for a in project.alerts(run_id=result.run_id)}
    assert set(by_rule) == {"quality below 0.9", "run failed"}
    failed = by_rule["run failed"]
    assert (failed.kind, failed.severity, failed.node) == ("failure", "critical", "boom")
    assert failed.evidence["failed_nodes"] == ["boom"]
    assert "RuntimeError: password=*** rejected" in failed.evidence["error"]
    assert by_rule["quality below 0.9"].observed == pytest.approx(4 / 7)
    records = [r for r in caplog.records if r.name == "headrace.alerts"]
    assert {r.levelno for r in records} == {logging.ERROR, logging.WARNING}
    assert any("node boom failed" in r.getMessage() for r in records)
    assert "hunter2" not in caplog.text


def test_new_data_calls_the_retraining_hook_with_the_fresh_versions(
    make_project: ProjectFactory, receiver: Receiver
) -> None:
    project = make_project(
        f"""
[[alerts.rules]]
name = "retrain"
kind = "new_data"
datasets = ["clean"]
sinks = ["trainer"]

[alerts.sinks.trainer]
{FAST_WEBHOOK}url = "{receiver.url}/retrain"
"""
    )
    got: list[AlertRecord] = []
    stop = project.on_alert(got.append, kinds=["new_data"])
    first = project.run(shop_pipeline(bad_rows=0))
    (request,) = receiver.requests
    fresh = request.json()["evidence"]["datasets"]
    version = project.dataset_version("clean")
    assert fresh == [
        {
            "dataset": "clean",
            "version": version.version,
            "node": "clean",
            "partition": None,
            "rows_written": 4,
            "total_rows": 4,
            "content_hash": version.content_hash,
            "created_at": version.created_at.isoformat(),
        }
    ]
    assert [a.run_id for a in got] == [first.run_id]
    assert got[0].deliveries[0].sink == "trainer"
    (alert,) = project.alerts(kind="new_data")
    assert [d.sink for d in alert.deliveries] == ["trainer", "callback:list.append"]

    project.run(shop_pipeline(bad_rows=0))  # same data: nothing new, nothing sent
    assert len(receiver.requests) == 1
    stop()
    project.run(shop_pipeline(bad_rows=0, rows=6))  # new data; the callback is gone
    assert len(receiver.requests) == 2
    assert len(got) == 1


def test_a_failing_callback_is_recorded_and_never_fails_the_run(
    make_project: ProjectFactory,
) -> None:
    project = make_project('[[alerts.rules]]\nname = "any"\nkind = "new_data"\n')

    def retrain(alert: AlertRecord) -> None:
        raise ValueError("trainer offline")

    project.on_alert(retrain, rules=["any"])
    assert project.run(shop_pipeline()).ok
    (alert,) = project.alerts()
    callback = alert.deliveries[-1]
    assert callback.kind == "callback"
    assert callback.sink.endswith("retrain")
    assert (callback.ok, callback.error) == (False, "ValueError: trainer offline")


def test_quarantine_share_and_freshness_rules(make_project: ProjectFactory) -> None:
    project = make_project(
        """
[[alerts.rules]]
name = "too much quarantine"
kind = "quarantine_share"
threshold = 0.25

[[alerts.rules]]
name = "stale orders"
kind = "freshness"
threshold = 86400
nodes = ["orders"]
"""
    )
    project.run(shop_pipeline(bad_rows=2))
    by_rule = {a.rule: a for a in project.alerts()}
    share = by_rule["too much quarantine"]
    assert (share.node, share.observed) == ("clean", pytest.approx(2 / 6))
    stale = by_rule["stale orders"]
    assert stale.node == "orders"
    assert stale.evidence["newest_event_time"] == "2024-03-01T05:00:00+00:00"
    assert stale.observed is not None
    assert stale.observed > 86400


def test_drift_rules_fire_on_a_drift_result(
    make_project: ProjectFactory, receiver: Receiver
) -> None:
    project = make_project(
        f"""
[[alerts.rules]]
name = "flights drift"
kind = "drift"
threshold = 0.2
datasets = ["flights"]
sinks = ["trainer"]

[alerts.sinks.trainer]
{FAST_WEBHOOK}url = "{receiver.url}/drift"
"""
    )
    monitor = project.monitor
    calm = DriftSignal(("a",), columns=10)
    assert monitor.evaluate_drift(calm, dataset="flights") == []
    wide = DriftSignal(("a", "b"), columns=2)
    assert monitor.evaluate_drift(wide, dataset="weather") == []  # not a watched dataset
    shifted = DriftSignal(("dep_delay", "distance", "carrier"), columns=10)
    (alert,) = monitor.evaluate_drift(
        shifted, dataset="flights", reference_version=1, current_version=3
    )
    assert alert.observed == pytest.approx(0.3)
    assert alert.evidence == {
        "dataset": "flights",
        "reference_version": 1,
        "current_version": 3,
        "drifted_columns": ["dep_delay", "distance", "carrier"],
        "share": pytest.approx(0.3),
    }
    assert receiver.requests[0].json()["evidence"]["current_version"] == 3
    assert project.alerts(kind="drift")[0].alert_id == alert.alert_id


def test_node_duration_rule_and_pipeline_filter(make_project: ProjectFactory) -> None:
    project = make_project(
        """
[[alerts.rules]]
name = "slow clean"
kind = "duration"
threshold = 0
nodes = ["clean"]

[[alerts.rules]]
name = "other pipeline"
kind = "duration"
threshold = 0
pipelines = ["billing"]
"""
    )
    project.run(shop_pipeline())
    (alert,) = project.alerts()
    assert (alert.rule, alert.node) == ("slow clean", "clean")
    assert alert.evidence["rows_out"] == 4


def test_callbacks_reject_unknown_kinds(project: hr.Project) -> None:
    with pytest.raises(ValueError, match="unknown alert kind"):
        project.on_alert(print, kinds=["qualty"])


def test_a_drift_result_from_the_drift_detector_fires_drift_rules(
    make_project: ProjectFactory,
) -> None:
    import numpy as np

    from headrace.quality.drift import compare, sketch_frame

    project = make_project('[[alerts.rules]]\nname = "drift"\nkind = "drift"\nthreshold = 0.4\n')
    rng = np.random.default_rng(7)
    reference = pl.DataFrame({"a": rng.normal(0, 1, 5000), "b": rng.normal(0, 1, 5000)})
    current = pl.DataFrame({"a": rng.normal(3, 1, 5000), "b": rng.normal(0, 1, 5000)})
    result = compare(sketch_frame(reference), current)
    (alert,) = project.monitor.evaluate_drift(
        result, dataset="numbers", reference_version=0, current_version=1
    )
    assert alert.evidence["drifted_columns"] == ["a"]
    assert alert.observed == pytest.approx(0.5)
    assert json.loads(json.dumps(project.alerts()[0].evidence))["dataset"] == "numbers"
