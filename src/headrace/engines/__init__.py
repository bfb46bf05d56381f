"""headrace engines."""
