"""The HTTP API (FastAPI): feature lookups for models, events pushed to topics, the registry.

``headrace serve`` (or ``headrace features serve``) runs it with Uvicorn; the OpenAPI
document is at ``/openapi.json`` and the interactive docs at ``/docs``.

Errors are answered with a JSON body ``{"error": {"type": ..., "message": ...}}``: 404 for an
unknown feature set, version or model, 422 for a malformed request or entity keys lacking a
join key, 503 when the online store cannot be reached. A bug is a 500, never a bad request.

``POST /streams/{topic}/events`` appends events to a topic of the project's stream broker
(:mod:`headrace.project.streams`): 400 for a body that does not parse, 415 for another
content type, 422 for records that do not fit the topic (the error also has ``reason``,
``record`` and ``field``), 503 when the log or the broker cannot be written. A refused request
appends nothing.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from headrace.connectors.log import LogError
from headrace.errors import (
    BrokerError,
    EntityRowsError,
    FeatureStoreError,
    HeadraceError,
    OnlineStoreError,
    UnknownFeatureError,
)
from headrace.project.project import Project
from headrace.project.streams import (
    ARROW_STREAM,
    JSON,
    NDJSON,
    EventsError,
    ProducedEvents,
    TopicNameError,
    TopicWriter,
    check_topic,
)

__all__ = ["create_app"]

MAX_ENTITIES = 10_000


class OnlineRequest(BaseModel):
    """A batch lookup: which features (a feature set, or a model's), for which entities."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "feature_set": "arrival_delay",
                    "entities": [{"carrier": "UA", "origin": "EWR", "tailnum": "N14228"}],
                },
                {"model": "delay_model", "model_version": "3", "entities": [{"carrier": "AA"}]},
            ]
        },
    )

    feature_set: str | None = Field(None, description="Feature set name (or give a model).")
    version: int | None = Field(None, description="Feature set version (default: newest).")
    model: str | None = Field(None, description="Model name: use the set it was trained on.")
    model_version: str | None = Field(None, description="Model version (with model).")
    entities: list[dict[str, Any]] = Field(
        ..., min_length=1, max_length=MAX_ENTITIES, description="Join-key values per entity."
    )
    as_of: datetime | None = Field(
        None, description="Judge TTL expiry at this time (default: now; timezone-aware)."
    )
    include_event_times: bool = Field(False, description="Also return each value's event time.")

    @model_validator(mode="after")
    def _one_target(self) -> OnlineRequest:
        if (self.feature_set is None) == (self.model is None):
            msg = "give exactly one of feature_set or model (with model_version)"
            raise ValueError(msg)
        if self.model is not None and self.model_version is None:
            msg = "model_version is required with model"
            raise ValueError(msg)
        if self.as_of is not None and self.as_of.tzinfo is None:
            msg = "as_of must be timezone-aware (e.g. 2013-06-01T12:00:00Z)"
            raise ValueError(msg)
        return self


class EntityResult(BaseModel):
    """One entity's feature vector."""

    values: list[Any] = Field(description="One value per feature (null unless present).")
    statuses: list[str] = Field(description="present | missing | expired, per feature.")
    event_times: list[datetime | None] | None = None


class OnlineResponse(BaseModel):
    """Feature vectors, aligned with the request's entities."""

    feature_set: str
    version: int = Field(description="The feature set version that was used.")
    features: list[str] = Field(description="Feature names (view__feature), in order.")
    results: list[EntityResult]


class ErrorBody(BaseModel):
    """What went wrong."""

    error: dict[str, str]


_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Unknown feature set, version or model."},
    422: {"description": "Malformed request or entity keys lacking a join key."},
    503: {"model": ErrorBody, "description": "The online store cannot be reached."},
}


class PushResponse(BaseModel):
    """Where the pushed events went."""

    topic: str
    events: int = Field(description="Events appended.")
    partitions: list[int] = Field(
        description="Partitions that received events (empty when a broker, not the embedded "
        "log, took them)."
    )
    first_offsets: dict[str, int] = Field(
        description="Per partition, the offset of the first event of this request."
    )


class PushErrorDetail(BaseModel):
    """What was wrong with pushed events; ``record`` (0-based) and ``field`` say where."""

    type: str
    message: str
    reason: str | None = None
    record: int | None = None
    field: str | None = None


class PushErrorBody(BaseModel):
    """Why nothing of the request was appended."""

    error: PushErrorDetail


_PUSH_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": PushErrorBody, "description": "The body is not JSON, NDJSON or Arrow."},
    415: {"model": PushErrorBody, "description": "Another content type."},
    422: {
        "model": PushErrorBody,
        "description": "A bad topic name, or records that do not fit the topic's schema.",
    },
    503: {"model": ErrorBody, "description": "The log or the broker cannot be written."},
}
_PUSH_BODY = {
    "required": True,
    "content": {
        JSON: {
            "schema": {
                "oneOf": [
                    {"type": "object"},
                    {"type": "array", "items": {"type": "object"}},
                ]
            },
            "example": [{"user": "ada", "amount": 12.5, "ts": "2024-03-01T12:00:00Z"}],
        },
        NDJSON: {"schema": {"type": "string", "description": "One JSON object per line."}},
        ARROW_STREAM: {
            "schema": {"type": "string", "format": "binary", "description": "Arrow IPC stream."}
        },
    },
}
_BAD_BODY = {"not_json", "not_arrow"}


def create_app(project: Project) -> FastAPI:
    """The API of ``project`` (its feature store and topics are opened once and reused)."""
    topics = _Topics(project)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        topics.close()

    app = FastAPI(
        title="headrace",
        summary="Feature serving, event ingestion and registry of a headrace project.",
        version="1",
        lifespan=lifespan,
    )
    store = project.features

    @app.exception_handler(HeadraceError)
    async def _headrace_error(_request: Request, exc: HeadraceError) -> JSONResponse:
        pushed = _push_error(exc)
        if pushed is not None:
            return pushed
        status = 400
        if isinstance(exc, UnknownFeatureError):
            status = 404
        elif isinstance(exc, EntityRowsError):
            status = 422
        elif isinstance(exc, OnlineStoreError):
            status = 503
        elif not isinstance(exc, FeatureStoreError):
            status = 500
        body = {"error": {"type": type(exc).__name__, "message": str(exc)}}
        return JSONResponse(body, status_code=status)

    @app.get(
        "/metrics", summary="Prometheus metrics: runs, nodes, alerts.", response_class=Response
    )
    def metrics(request: Request) -> Response:  # sync: the database reads run in a thread
        body, content_type = project.monitor.exposition(request.headers.get("accept"))
        return Response(content=body, media_type=content_type)

    @app.get("/health", summary="Liveness and the online store in use.")
    async def health() -> dict[str, str]:
        return {"status": "ok", "online_store": store.online_store.describe()}

    @app.post(
        "/features/online",
        response_model=OnlineResponse,
        responses=_ERRORS,
        summary="Feature vectors for a batch of entities.",
    )
    async def online(request: OnlineRequest) -> Response:
        """Look up a feature set (or the one a model version was trained on) for entities.

        Each value has a status: ``present``, ``missing`` (nothing stored for the entity) or
        ``expired`` (older than the view's TTL at ``as_of``; the value is then null).
        """
        found = store.get_online_features(
            request.feature_set or "",
            request.entities,
            version=request.version,
            model=request.model,
            model_version=request.model_version,
            as_of=request.as_of,
        )
        results: list[dict[str, Any]] = [
            {"values": row, "statuses": statuses}
            for row, statuses in zip(found.values, found.statuses, strict=True)
        ]
        if request.include_event_times:
            for item, moments in zip(results, found.event_times, strict=True):
                item["event_times"] = [None if t is None else t.isoformat() for t in moments]
        body = {
            "feature_set": found.feature_set,
            "version": found.version,
            "features": list(found.features),
            "results": results,
        }
        return Response(_dumps(body), media_type="application/json")

    @app.get("/features/sets", summary="Registered feature sets and their versions.")
    async def feature_sets() -> list[dict[str, Any]]:
        out = []
        for name in store.registry.feature_set_names():
            for version in store.registry.feature_set_versions(name):
                out.append(
                    {
                        "name": name,
                        "version": version.version,
                        "features": [str(ref) for ref, _ in version.features],
                        "view_versions": version.view_versions,
                    }
                )
        return out

    @app.get(
        "/models/{model}/{model_version}",
        responses=_ERRORS,
        summary="The feature set version a model version was trained on.",
    )
    async def model(model: str, model_version: str) -> dict[str, Any]:
        binding = store.registry.binding(model, model_version)
        assert binding is not None
        return {
            "model": binding.model,
            "model_version": binding.model_version,
            "feature_set": binding.feature_set,
            "feature_set_version": binding.feature_set_version,
        }

    @app.post(
        "/streams/{topic}/events",
        response_model=PushResponse,
        responses=_PUSH_ERRORS,
        summary="Append events to a topic (JSON, NDJSON or Arrow IPC stream).",
        openapi_extra={"requestBody": _PUSH_BODY},
    )
    async def push(
        topic: str,
        request: Request,
        key: Annotated[
            str | None,
            Query(description="Route by this field: equal keys go to one partition, in order."),
        ] = None,
    ) -> Response:
        """Append the events of the body to ``topic`` (created on its first append).

        The body is ``application/json`` (an object, or an array of objects),
        ``application/x-ndjson`` (one object per line) or ``application/vnd.apache.arrow.stream``.
        JSON values take the topic's types (ISO 8601 text becomes a datetime); a new topic takes
        the JSON types. The whole request is checked before anything is appended: a record that
        does not fit is refused, naming its index and field, and nothing is written.
        """
        check_topic(topic)
        body = await request.body()
        media_type = request.headers.get("content-type", "")
        produced = await run_in_threadpool(topics.push, topic, body, media_type, key)
        return JSONResponse(produced.to_dict())

    return app


class _Topics:
    """The topic writers of the app, opened on first use and closed when the app stops."""

    def __init__(self, project: Project) -> None:
        self._project = project
        self._writers: dict[str, TopicWriter] = {}
        self._lock = threading.Lock()

    def push(self, topic: str, body: bytes, media_type: str, key: str | None) -> ProducedEvents:
        """Decode, check and append one request's events (called in a worker thread)."""
        writer = self._writer(topic)
        frame = writer.decode(body, media_type)
        return writer.send(frame, key=key)

    def _writer(self, topic: str) -> TopicWriter:
        with self._lock:
            writer = self._writers.get(topic)
            if writer is None:
                writer = self._writers[topic] = TopicWriter(self._project, topic)
            return writer

    def close(self) -> None:
        """Close every writer (flushing broker producers)."""
        with self._lock:
            writers, self._writers = list(self._writers.values()), {}
        for writer in writers:
            writer.close()


def _push_error(exc: HeadraceError) -> JSONResponse | None:
    """The answer to an error of ``POST /streams/{topic}/events`` (None for other errors)."""
    detail: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, EventsError):
        status = 422
        if exc.reason in _BAD_BODY:
            status = 400
        elif exc.reason == "media_type":
            status = 415
        detail.update(reason=exc.reason, record=exc.record, field=exc.field)
    elif isinstance(exc, TopicNameError):
        status = 422
        detail.update(reason="topic_name", record=None, field=None)
    elif isinstance(exc, BrokerError) or (
        isinstance(exc, LogError) and isinstance(exc.__cause__, OSError)
    ):
        status = 503
    else:
        return None
    return JSONResponse({"error": detail}, status_code=status)


def _finite(values: list[Any]) -> list[Any]:
    """JSON has no NaN or infinity: they become null."""
    return [None if isinstance(v, float) and not math.isfinite(v) else v for v in values]


def _dumps_stdlib(body: dict[str, Any]) -> bytes:
    """The response body as compact JSON, NaN and infinity as null (:mod:`json`)."""
    for item in body["results"]:
        item["values"] = _finite(item["values"])
    return json.dumps(body, separators=(",", ":")).encode()


try:
    import orjson
except ModuleNotFoundError:  # orjson comes with headrace[redis]
    _dumps = _dumps_stdlib
else:

    def _dumps(body: dict[str, Any]) -> bytes:
        """The response body as compact JSON, NaN and infinity as null (orjson).

        Fifteen times faster than :mod:`json` for 100 entities x 50 float features (float
        formatting dominates); orjson writes NaN and infinity as null itself.
        """
        return orjson.dumps(body)
