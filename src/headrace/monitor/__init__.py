"""headrace monitor."""
