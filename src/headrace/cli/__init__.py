"""headrace cli."""
