import pytest

from headrace.core.schema_change import classify


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            {"a": ("Int64", True)},
            {"a": ("Int64", True), "b": ("String", True)},
            [("b", "added", False)],
        ),
        (
            {"a": ("Int64", True)},
            {"a": ("Int64", True), "b": ("String", False)},
            [("b", "added", True)],
        ),
        (
            {"a": ("Int64", True), "b": ("String", True)},
            {"a": ("Int64", True)},
            [("b", "dropped", True)],
        ),
        ({"a": ("Int32", True)}, {"a": ("Int64", True)}, [("a", "type widened", False)]),
        ({"a": ("Int32", True)}, {"a": ("Float64", True)}, [("a", "type widened", False)]),
        ({"a": ("Int64", True)}, {"a": ("Int32", True)}, [("a", "type changed", True)]),
        ({"a": ("Float64", True)}, {"a": ("String", True)}, [("a", "type changed", True)]),
        ({"a": ("Int64", True)}, {"a": ("Int64", False)}, [("a", "now required", True)]),
        ({"a": ("Int64", False)}, {"a": ("Int64", True)}, [("a", "now nullable", False)]),
        (
            {"a": ("Int64", True)},
            {"b": ("Int64", True)},
            [("a", "dropped", True), ("b", "added", False)],
        ),
        ({"a": ("Int64", True)}, {"a": ("Int64", True)}, []),
    ],
)
def test_changes_are_classified(old, new, expected) -> None:  # type: ignore[no-untyped-def]
    assert [(c.column, c.kind, c.breaking) for c in classify(old, new)] == expected
