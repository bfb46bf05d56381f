"""The HTTP API, served by a real Uvicorn server on a loopback port."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn

import headrace as hr
from headrace.serving.app import create_app

AS_OF = "2024-03-02T06:00:00Z"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(feature_project: Path) -> Iterator[str]:
    project = hr.Project(feature_project)
    project.run().raise_for_status()
    project.features.materialize(as_of=datetime(2024, 3, 2, 6, tzinfo=UTC))
    project.features.bind_model("fraud_model", "1", "fraud")
    port = _free_port()
    config = uvicorn.Config(create_app(project), host="127.0.0.1", port=port, log_level="error")
    app_server = uvicorn.Server(config)
    thread = threading.Thread(target=app_server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not app_server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    app_server.should_exit = True
    thread.join(10)
    project.close()


def _call(url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_batch_lookup_returns_vectors_with_statuses(server: str) -> None:
    status, body = _call(
        f"{server}/features/online",
        {
            "feature_set": "fraud",
            "entities": [{"user": "ada"}, {"user": "bob"}, {"user": "nobody"}],
            "as_of": AS_OF,
            "include_event_times": True,
        },
    )
    assert status == 200
    assert body["feature_set"] == "fraud"
    assert body["version"] == 1
    assert body["features"] == [
        "spend__spend_1d",
        "spend__payments_1d",
        "spend__big",
        "spend__country",
    ]
    ada, bob, nobody = body["results"]
    assert ada["values"] == [2.0, 1, False, "fr"]
    assert ada["statuses"] == ["present"] * 4
    assert ada["event_times"][0] == "2024-03-02T02:00:00+00:00"
    assert bob["statuses"] == ["expired"] * 4
    assert bob["values"] == [None] * 4
    assert nobody["statuses"] == ["missing"] * 4


def test_a_model_version_gets_the_feature_set_it_was_trained_on(server: str) -> None:
    status, body = _call(
        f"{server}/features/online",
        {"model": "fraud_model", "model_version": "1", "entities": [{"user": "ada"}]},
    )
    assert status == 200
    assert (body["feature_set"], body["version"]) == ("fraud", 1)
    status, body = _call(f"{server}/models/fraud_model/1")
    assert (status, body["feature_set_version"]) == (200, 1)


@pytest.mark.parametrize(
    ("request_body", "code", "needle"),
    [
        ({"feature_set": "nope", "entities": [{"user": "a"}]}, 404, "no feature set 'nope'"),
        ({"feature_set": "fraud", "version": 9, "entities": [{"user": "a"}]}, 404, "no version 9"),
        ({"model": "m", "model_version": "1", "entities": [{"user": "a"}]}, 404, "not bound"),
        ({"feature_set": "fraud", "entities": [{"usr": "a"}]}, 422, "lacks join key 'user'"),
        ({"feature_set": "fraud", "entities": []}, 422, "at least 1"),
        ({"entities": [{"user": "a"}]}, 422, "exactly one of feature_set or model"),
        (
            {"feature_set": "fraud", "entities": [{"user": "a"}], "as_of": "2024-01-01T00:00"},
            422,
            "timezone-aware",
        ),
    ],
)
def test_bad_requests_get_4xx_with_a_message(
    server: str, request_body: dict[str, Any], code: int, needle: str
) -> None:
    status, body = _call(f"{server}/features/online", request_body)
    assert status == code
    assert needle in json.dumps(body)


def test_openapi_documents_the_lookup(server: str) -> None:
    status, spec = _call(f"{server}/openapi.json")
    assert status == 200
    operation = spec["paths"]["/features/online"]["post"]
    assert {"200", "404", "422", "503"} <= set(operation["responses"])
    request = spec["components"]["schemas"]["OnlineRequest"]
    assert {"feature_set", "model", "model_version", "entities", "as_of"} <= set(
        request["properties"]
    )
    assert "OnlineResponse" in spec["components"]["schemas"]
    status, health = _call(f"{server}/health")
    assert (status, health["status"]) == (200, "ok")


def test_prometheus_metrics_are_served(server: str) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{server}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert "headrace_runs" in names  # counters are exposed as headrace_runs_total
    assert "headrace_node_duration_seconds" in names
