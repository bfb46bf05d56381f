"""OpenLineage run events (spec 2-0-2) and facets, as plain JSON-ready dicts.

Naming:

* jobs: the pipeline run is the job ``{pipeline}``; each node is the job
  ``{pipeline}.{node}``, whose runs carry a ``parent`` facet naming the pipeline run;
* runs: ``runId`` is a UUID derived from headrace's run id (and the task id for a node, e.g.
  ``flights_clean[2013-01-05]``) with :func:`uuid.uuid5`, so the same run always gets the
  same UUID and a consumer can join events to ``headrace runs``;
* datasets: headrace's versioned datasets are named by their dataset name in the project's
  namespace (``[lineage] namespace``, default ``headrace://<project name>``), with the Delta
  Lake version as the ``version`` facet; an ingest node's external source follows the
  OpenLineage naming conventions (``file`` + absolute path, ``postgres://host:port`` +
  ``database.schema.table``, ...), credentials never included.

Every facet carries ``_producer`` and a ``_schemaURL`` naming the facet schema version it
follows (those in the spec folder the tests validate against).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "FACET_VERSIONS",
    "PRODUCER",
    "SCHEMA_URL",
    "dataset",
    "facet",
    "headrace_version",
    "iso",
    "run_event",
    "run_uuid",
    "source_dataset",
]

SPEC_VERSION = "2-0-2"
SCHEMA_URL = f"https://openlineage.io/spec/{SPEC_VERSION}/OpenLineage.json#/$defs/RunEvent"


@cache
def headrace_version() -> str:
    """The installed headrace version."""
    try:
        return package_version("headrace")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


PRODUCER = f"https://pypi.org/project/headrace/{headrace_version()}/"
"""Who made the events: headrace and its version (a URI, as the spec asks)."""

FACET_VERSIONS: Mapping[str, tuple[str, str]] = {
    # facet key -> (schema file name, version of that schema)
    "parent": ("ParentRunFacet", "1-2-0"),
    "errorMessage": ("ErrorMessageRunFacet", "1-0-1"),
    "processing_engine": ("ProcessingEngineRunFacet", "1-1-1"),
    "nominalTime": ("NominalTimeRunFacet", "1-0-1"),
    "tags": ("TagsRunFacet", "1-0-0"),
    "jobType": ("JobTypeJobFacet", "2-0-4"),
    "sourceCode": ("SourceCodeJobFacet", "1-0-1"),
    "sql": ("SQLJobFacet", "1-1-0"),
    "documentation": ("DocumentationJobFacet", "1-1-0"),
    "jobTags": ("TagsJobFacet", "1-0-0"),
    "schema": ("SchemaDatasetFacet", "1-2-0"),
    "version": ("DatasetVersionDatasetFacet", "1-0-1"),
    "dataSource": ("DatasourceDatasetFacet", "1-0-1"),
    "storage": ("StorageDatasetFacet", "1-0-1"),
    "datasetDocumentation": ("DocumentationDatasetFacet", "1-1-0"),
    "columnLineage": ("ColumnLineageDatasetFacet", "1-2-0"),
    "dataQualityMetrics": ("DataQualityMetricsDatasetFacet", "1-0-0"),
    "dataQualityAssertions": ("DataQualityAssertionsDatasetFacet", "1-1-0"),
    "outputStatistics": ("OutputStatisticsOutputDatasetFacet", "1-0-2"),
    "lifecycleStateChange": ("LifecycleStateChangeDatasetFacet", "1-0-1"),
}
"""Which schema each facet follows. Two keys are aliases for the same facet key in the event
(``jobTags`` is sent as ``tags``, ``datasetDocumentation`` as ``documentation``)."""


def facet(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """A facet of ``kind`` (a key of :data:`FACET_VERSIONS`) with ``body``."""
    name, version = FACET_VERSIONS[kind]
    return {
        "_producer": PRODUCER,
        "_schemaURL": f"https://openlineage.io/spec/facets/{version}/{name}.json#/$defs/{name}",
        **body,
    }


def run_uuid(namespace: str, run_id: str, task: str | None = None) -> str:
    """The OpenLineage ``runId`` of a headrace run (``task=None``) or of one of its tasks."""
    key = f"headrace:{namespace}:{run_id}" + ("" if task is None else f":{task}")
    return str(uuid.uuid5(uuid.NAMESPACE_URL, key))


def iso(moment: datetime) -> str:
    """An RFC 3339 timestamp (``2026-11-26T10:15:00.123456+00:00``)."""
    return moment.isoformat()


def run_event(
    event_type: str,
    event_time: datetime,
    *,
    run_id: str,
    namespace: str,
    job: str,
    run_facets: Mapping[str, Any] | None = None,
    job_facets: Mapping[str, Any] | None = None,
    inputs: Sequence[Mapping[str, Any]] = (),
    outputs: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """One ``RunEvent``."""
    event: dict[str, Any] = {
        "eventType": event_type,
        "eventTime": iso(event_time),
        "producer": PRODUCER,
        "schemaURL": SCHEMA_URL,
        "run": {"runId": run_id, "facets": dict(run_facets or {})},
        "job": {"namespace": namespace, "name": job, "facets": dict(job_facets or {})},
        "inputs": [dict(i) for i in inputs],
        "outputs": [dict(o) for o in outputs],
    }
    return event


def dataset(
    namespace: str,
    name: str,
    facets: Mapping[str, Any] | None = None,
    *,
    output_facets: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An input or output dataset (``output_facets`` only for outputs)."""
    out: dict[str, Any] = {"namespace": namespace, "name": name, "facets": dict(facets or {})}
    if output_facets:
        out["outputFacets"] = dict(output_facets)
    return out


def source_dataset(kind: str, location: str, table: str | None = None) -> tuple[str, str]:
    """The OpenLineage (namespace, name) of an ingest node's external source.

    ``kind`` is ``files`` (``location`` a path, glob or URL) or ``sql`` (``location`` a DSN,
    ``table`` the table read, maybe ``schema.table``). No credentials go into either part.

    >>> source_dataset("files", "/data/weather.csv")
    ('file', '/data/weather.csv')
    >>> source_dataset("files", "s3://bucket/raw/*.parquet")
    ('s3://bucket', 'raw/*.parquet')
    >>> source_dataset("sql", "postgresql://me:secret@db.local:5433/shop", "orders")
    ('postgres://db.local:5433', 'shop.public.orders')
    >>> source_dataset("sql", "mysql+pymysql://root@127.0.0.1/test", "weather")
    ('mysql://127.0.0.1:3306', 'test.weather')
    """
    if kind == "files":
        parts = urlsplit(location)
        if parts.scheme and len(parts.scheme) > 1 and parts.scheme != "file":
            return f"{parts.scheme}://{parts.hostname or ''}", parts.path.lstrip("/")
        return "file", parts.path if parts.scheme == "file" else location
    parts = urlsplit(location)
    scheme = parts.scheme.split("+")[0].lower()
    database = parts.path.lstrip("/")
    table = table or ""
    if scheme in ("postgresql", "postgres"):
        qualified = table if "." in table else f"public.{table}"
        return f"postgres://{parts.hostname}:{parts.port or 5432}", f"{database}.{qualified}"
    if scheme in ("mysql", "mariadb"):
        return f"mysql://{parts.hostname}:{parts.port or 3306}", f"{database}.{table}"
    if scheme == "sqlite":
        return f"sqlite://{parts.path}", table
    host = f"{parts.hostname}:{parts.port}" if parts.port else (parts.hostname or "")
    return f"{scheme}://{host}", f"{database}.{table}" if database else table
