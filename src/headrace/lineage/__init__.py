"""Lineage: OpenLineage events for every run and node, and lineage queries.

OpenLineage emission (``[lineage]`` in ``headrace.toml``):

- :mod:`headrace.lineage.emitter` — :class:`~headrace.lineage.emitter.OpenLineageEmitter`, the
  run listener a project attaches to every run;
- :mod:`headrace.lineage.events` — run events and facets as JSON-ready dicts (spec 2-0-2);
- :mod:`headrace.lineage.transports` — file (JSON lines), HTTP (Marquez) and Kafka;
- :mod:`headrace.lineage.metrics` — the ``dataQualityMetrics`` of a dataset version;
- :mod:`headrace.lineage.columns` — column lineage of SQL, Polars, feature-view and ingest
  nodes.
"""
