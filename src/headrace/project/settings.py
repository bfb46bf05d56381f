"""Typed project settings: ``headrace.toml``, overridden by ``HEADRACE_<SECTION>_<KEY>`` variables.

::

    [project]
    name = "flights"
    pipelines = ["pipeline.py"]      # files (relative to the project) defining hr.Pipeline objects

    [storage]
    root = ".headrace"               # state folder: metadata.db, datasets under data/

    [metadata]
    url = "postgresql://me@db/headrace"   # default: SQLite in the state folder

    [executor]
    max_workers = 4                  # default: CPU count
    fail_fast = true

    [quality]
    reports = true                   # an HTML report per validated node and run

    [features]
    online_store = "redis://127.0.0.1:6379/0"  # default: sqlite:///online.db in the state folder
    memory_budget_mb = 2048          # training sets over more feature data join in buckets

    [retention]                      # `headrace datasets vacuum` keeps, per dataset,
    keep_versions = 10               # the newest 10 versions and
    keep_days = 30                   # every version younger than 30 days
    [retention.datasets.flights_raw]
    keep_versions = 3

    [config]                         # values handed to nodes' config parameters
    data_dir = "data"

    [sources.weather_raw]            # an ingest node, added to the project's pipeline
    type = "sql"                     # or "files" (path = "data/*.csv", incremental = true)
    dsn = "${WEATHER_DSN}"           # ${VAR}: from the environment, never written here
    table = "weather"
    cursor = "time_hour"             # optional: read only rows newer than the last run's
    contract = "contracts/weather.yaml"  # optional: validate, quarantine bad rows

An environment variable overrides one key: ``HEADRACE_METADATA_URL``,
``HEADRACE_EXECUTOR_MAX_WORKERS``, ``HEADRACE_CONFIG_DATA_DIR`` (section, then key).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from headrace.core.redaction import redact
from headrace.errors import ConfigError
from headrace.lineage.settings import LineageSettings
from headrace.monitor.settings import AlertSettings, MetricsSettings

__all__ = [
    "ExecutorSettings",
    "MetadataSettings",
    "ProjectSettings",
    "QualitySettings",
    "Settings",
    "StorageSettings",
    "load_settings",
]

SETTINGS_FILE = "headrace.toml"
ENV_PREFIX = "HEADRACE_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProjectSettings(_Section):
    """``[project]``: what the project is called and where its pipelines are defined."""

    name: str = "headrace-project"
    pipelines: list[str] = Field(default_factory=lambda: ["pipeline.py"])


class StorageSettings(_Section):
    """``[storage]``: where state lives (relative paths are relative to the project)."""

    root: Path = Path(".headrace")


class MetadataSettings(_Section):
    """``[metadata]``: the metadata database URL (SQLAlchemy form)."""

    url: str | None = None


class ExecutorSettings(_Section):
    """``[executor]``: how tasks run."""

    kind: str = "local"
    max_workers: int | None = Field(default=None, ge=1)
    fail_fast: bool = True


class QualitySettings(_Section):
    """``[quality]``: what validation leaves behind."""

    reports: bool = True
    """Write an HTML quality report per validated node and run (``.headrace/reports/RUN``)."""


class FeatureSettings(_Section):
    """``[features]``: the online store and the training-set memory budget."""

    online_store: str | None = None
    """``sqlite:///online.db`` (default, in the state folder), ``redis://host:6379/0`` or
    ``postgresql://...``."""
    memory_budget_mb: int = Field(default=2048, ge=16)
    """Feature data larger than this is joined in hash buckets, one at a time."""


class StreamSettings(_Section):
    """``[stream]``: the broker streaming jobs read from and their checkpointing."""

    broker: str = "log"
    """``log`` (the embedded log under ``<storage.root>/streams``), or a broker URL:
    ``kafka://host:port``, ``nats://host:port``, ``redis://host:port/db``."""
    partitions: int = Field(default=4, ge=1)
    """Partitions of a topic the embedded log (or a producer) creates."""
    retention: str | None = None
    """Embedded log: delete whole sealed segments last written longer ago than this
    (``"7d"``); None keeps all. Checked each time an append rolls a partition to a new
    segment (``headrace.project.streams.apply_retention`` applies it now)."""
    retention_bytes: int | None = Field(default=None, ge=1)
    """Embedded log, per partition (as Kafka's ``retention.bytes``): each time an append rolls
    a partition to a new segment, its oldest sealed segments are deleted until it holds at
    most this many bytes. The segment being appended to is never deleted, so a partition may
    hold about one segment (64 MiB) more than this between rolls. None keeps all."""
    checkpoint_interval: float = Field(default=1.0, gt=0)
    """Seconds between checkpoints of a streaming job."""
    max_batch: int = Field(default=100_000, ge=1)
    """Most messages one micro-batch takes from the source."""
    idle_timeout: float | None = Field(default=None, gt=0)
    """Seconds without events after which a partition stops holding the watermark back
    (its later events older than the watermark are then late); None: it always holds."""
    options: dict[str, str] = Field(default_factory=dict)
    """Broker client settings, e.g. ``"session.timeout.ms" = "6000"`` for Kafka
    (librdkafka), ``reconnect_timeout`` (seconds) for every broker."""


class RetentionPolicy(_Section):
    """How long versions of a dataset are kept.

    A version is kept when either limit says so; None means no limit of that kind.
    """

    keep_versions: int | None = Field(default=None, ge=1)
    keep_days: float | None = Field(default=None, gt=0)


class RetentionSettings(RetentionPolicy):
    """``[retention]``: the default policy, and ``[retention.datasets.NAME]`` overrides.

    Applied by ``headrace datasets vacuum``. Whatever the policy, a version is never removed
    while a feature set or a recorded training set references it, nor the newest one.
    """

    datasets: dict[str, RetentionPolicy] = Field(default_factory=dict)

    def policy(self, dataset: str) -> RetentionPolicy:
        """The policy of one dataset (its override, or the default)."""
        return self.datasets.get(dataset, self)


class Settings(_Section):
    """All settings of a project."""

    project: ProjectSettings = Field(default_factory=ProjectSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    metadata: MetadataSettings = Field(default_factory=MetadataSettings)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    lineage: LineageSettings = Field(default_factory=LineageSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    config: dict[str, Any] = Field(default_factory=dict)
    sources: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """``[sources.NAME]`` tables: ingest nodes declared in the settings file."""


_SECTIONS = (
    "project",
    "storage",
    "metadata",
    "executor",
    "quality",
    "features",
    "lineage",
    "metrics",
    "alerts",
    "retention",
    "config",
)


def load_settings(root: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read ``root/headrace.toml`` (if present) and apply ``HEADRACE_*`` overrides."""
    path = root / SETTINGS_FILE
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            msg = f"{path} is not valid TOML: {exc}; fix the file"
            raise ConfigError(msg) from exc
    for section, key, value in _environment_overrides(os.environ if environ is None else environ):
        data.setdefault(section, {})[key] = value
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        msg = f"invalid settings in {path} or HEADRACE_* variables: {redact(problems)}"
        raise ConfigError(msg) from None


def _environment_overrides(environ: Mapping[str, str]) -> list[tuple[str, str, str]]:
    out = []
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name.removeprefix(ENV_PREFIX).lower()
        for section in _SECTIONS:
            if rest.startswith(section + "_"):
                out.append((section, rest.removeprefix(section + "_"), value))
                break
    return out
