"""headrace testing."""
