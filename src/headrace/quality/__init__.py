"""headrace quality."""
