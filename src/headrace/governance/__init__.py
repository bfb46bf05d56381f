"""headrace governance."""
