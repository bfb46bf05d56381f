"""The package's public surface is exactly ``headrace.__all__``."""

import types

import headrace


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(headrace).items()
        if not name.startswith("_")
        and not (isinstance(value, types.ModuleType) and name not in headrace.__all__)
        and name != "annotations"
    }
    assert public == set(headrace.__all__)


def test_every_exported_name_resolves() -> None:
    for name in headrace.__all__:
        assert getattr(headrace, name) is not None
    assert headrace.__all__ == sorted(headrace.__all__)
