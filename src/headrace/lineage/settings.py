"""``[lineage]`` settings: where OpenLineage events go and what they carry."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

__all__ = ["LineageSettings"]


class LineageSettings(BaseModel):
    """``[lineage]``: emit OpenLineage events for every run and node.

    ``transport = "file"`` (default) appends JSON lines to ``<state>/lineage/events.jsonl``
    (or to the file ``url`` names); ``"http"`` posts to a Marquez-compatible endpoint
    (``url``, e.g. ``http://localhost:5000``); ``"kafka"`` produces to ``topic`` on the
    brokers in ``url`` (``host:9092,...``; needs ``headrace[kafka]``); ``"none"`` turns
    emission off.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    transport: Literal["file", "http", "kafka", "none"] = "file"
    url: str | None = None
    topic: str = "openlineage"
    namespace: str | None = None
    """The OpenLineage job and dataset namespace (default: ``headrace://<project name>``)."""
    column_metrics: bool = False
    """Per-column distinct counts, sums and quantiles: one extra pass over each new output
    version. Off: null counts and numeric min/max come free from the Parquet footers."""
    column_lineage: bool = True
    """Derive column lineage (SQL nodes parsed; Python transforms traced on empty inputs)."""
    timeout: float = Field(default=5.0, gt=0)
    """Seconds per HTTP request (and the Kafka delivery wait unit)."""
    retries: int = Field(default=3, ge=0)
    """HTTP retries of an event after a connection error, a timeout, 429 or 5xx."""
    api_key: SecretStr | None = None
    """Sent as ``Authorization: Bearer ...`` by the HTTP transport; set it with
    ``HEADRACE_LINEAGE_API_KEY`` rather than in the file."""
    flush_timeout: float = Field(default=30.0, gt=0)
    """At the end of a run, wait at most this long for the remaining events to be sent."""

    @model_validator(mode="after")
    def _url_when_needed(self) -> Self:
        if self.transport in ("http", "kafka") and not self.url:
            example = "http://localhost:5000" if self.transport == "http" else "localhost:9092"
            msg = f'transport = "{self.transport}" needs url (e.g. url = "{example}")'
            raise ValueError(msg)
        return self
