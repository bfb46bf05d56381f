"""headrace connectors."""
