"""Lineage: OpenLineage events for every run and node, and lineage queries."""
