"""``[lineage]`` settings: where OpenLineage events go."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["LineageSettings"]


class LineageSettings(BaseModel):
    """``[lineage]``: emit OpenLineage events for every run and node.

    ``transport = "file"`` (default) appends JSON lines to ``<state>/lineage/events.jsonl``;
    ``"http"`` posts to a Marquez-compatible endpoint (``url``); ``"kafka"`` produces to
    ``topic`` on the brokers in ``url``; ``"none"`` turns emission off.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    transport: Literal["file", "http", "kafka", "none"] = "file"
    url: str | None = None
    topic: str = "openlineage"
    namespace: str | None = None
    """The OpenLineage job and dataset namespace (default: ``headrace://<project name>``)."""
