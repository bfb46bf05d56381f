"""headrace lineage."""
