"""headrace serving."""
