"""How a pipeline's source node is fed by a stream: the topic, its event time, its disorder.

``pipeline.stream("flights_raw", event_time="time_hour", disorder="1h", key="carrier")``
says: in a streaming job (``headrace stream run``), the rows of ``flights_raw`` come from the
topic ``flights_raw`` (of the broker in ``[stream] broker``) instead of the node's batch
function; everything downstream that can run on a stream (contracts, row-level transforms,
feature views) then runs on each micro-batch.

Event time is mandatory: the watermark of a partition is the newest event time it has seen
minus ``disorder``; an event older than its partition's watermark is *late* and goes to the
late-data side output, with its position and the reason, instead of into any window.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import polars as pl

from headrace.core.features import parse_duration
from headrace.errors import PipelineError

__all__ = ["StreamSource"]

_TOPIC = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$")


@dataclass(frozen=True)
class StreamSource:
    """A source node fed by a topic in streaming jobs.

    Attributes:
        node: the pipeline source node the stream replaces.
        event_time: the column holding each event's time (a datetime).
        disorder: how far out of order events may arrive (``"0s"``: in order).
        topic: the topic name (default: the node name).
        key: the column events are routed to partitions by (the entity key of the views that
            read the stream, so each entity's events stay in one partition).
        schema: column types of the decoded events (needed for JSON brokers; the embedded log
            stores typed rows and may leave it empty).

    """

    node: str
    event_time: str
    disorder: timedelta = timedelta()
    topic: str = ""
    key: str | None = None
    schema: Mapping[str, pl.DataType] = field(default_factory=dict)

    def __init__(
        self,
        node: str,
        *,
        event_time: str,
        disorder: str | timedelta = timedelta(),
        topic: str = "",
        key: str | None = None,
        schema: Mapping[str, pl.DataType | type[pl.DataType]] | None = None,
    ) -> None:
        where = f"stream of node {node!r}"
        if disorder == timedelta() or (
            isinstance(disorder, str) and disorder.strip() in {"0", "0s"}
        ):
            delay = timedelta()
        else:
            delay = parse_duration(disorder, what=f"{where}: disorder")
        name = topic or node
        if not _TOPIC.match(name):
            msg = f"{where}: topic {name!r} is not a valid name; use letters, digits, '_', '.', '-'"
            raise PipelineError(msg)
        types = {c: (t() if isinstance(t, type) else t) for c, t in (schema or {}).items()}
        if types and event_time not in types:
            msg = f"{where}: the schema has no event-time column {event_time!r}; add it"
            raise PipelineError(msg)
        object.__setattr__(self, "node", node)
        object.__setattr__(self, "event_time", event_time)
        object.__setattr__(self, "disorder", delay)
        object.__setattr__(self, "topic", name)
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "schema", types)

    def definition(self) -> dict[str, Any]:
        """A JSON-able description."""
        return {
            "node": self.node,
            "topic": self.topic,
            "event_time": self.event_time,
            "disorder_seconds": self.disorder.total_seconds(),
            "key": self.key,
            "schema": {c: str(t) for c, t in self.schema.items()},
        }
