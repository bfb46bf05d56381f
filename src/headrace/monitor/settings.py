"""``[metrics]`` and ``[alerts]`` settings."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["AlertSettings", "MetricsSettings"]


class MetricsSettings(BaseModel):
    """``[metrics]``: where batch runs push their metrics (Prometheus Pushgateway)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pushgateway: str | None = None
    """e.g. ``http://127.0.0.1:9091``; empty: metrics are only stored and served."""


class AlertSettings(BaseModel):
    """``[alerts]``: rules evaluated after each run, and where alerts go."""

    model_config = ConfigDict(extra="forbid", frozen=True)
