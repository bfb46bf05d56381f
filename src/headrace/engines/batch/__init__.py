"""headrace engines.batch."""
