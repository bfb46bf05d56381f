"""headrace storage."""
