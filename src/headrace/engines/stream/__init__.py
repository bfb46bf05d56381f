"""headrace engines.stream."""
