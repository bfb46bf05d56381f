"""Validate OpenLineage events against the official JSON schemas, offline.

The schemas (core spec 2-0-2 and the facet schemas) are read from ``../shared/openlineage-spec``
beside the repository; every ``https://openlineage.io/spec/...`` ``$ref`` resolves to those
files through a ``referencing`` registry (no network). An event is checked against the core
schema, then each facet against the schema its ``_schemaURL`` names, which must be one of
the local files and must define the facet under the key it is sent with.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

SPEC = Path(__file__).resolve().parents[2] / ".." / "shared" / "openlineage-spec"


def spec_folder() -> Path:
    """The spec folder, or skip the test (with the reason) when it is missing."""
    if not (SPEC / "OpenLineage.json").is_file():
        message = f"the OpenLineage JSON schemas are not at {SPEC.resolve()}"
        if os.environ.get("HEADRACE_REQUIRE_SERVICES") == "1":  # CI has them: never skip there
            pytest.fail(f"{message}; CI must provide ../shared/openlineage-spec", pytrace=False)
        pytest.skip(f"{message} (CI has them)")
    return SPEC


@cache
def _registry_and_schemas() -> tuple[Any, dict[str, Any], dict[str, str]]:
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    folder = spec_folder()
    resources = []
    schemas: dict[str, Any] = {}
    facet_keys: dict[str, str] = {}  # schema $id -> the facet key it defines
    for path in [folder / "OpenLineage.json", *sorted((folder / "facets").glob("*.json"))]:
        contents = json.loads(path.read_text(encoding="utf-8"))
        schemas[contents["$id"]] = contents
        keys = list(contents.get("properties", {}))
        if len(keys) == 1:
            facet_keys[contents["$id"]] = keys[0]
        resources.append(
            (contents["$id"], Resource.from_contents(contents, default_specification=DRAFT202012))
        )
    registry = Registry().with_resources(resources)
    return registry, schemas, facet_keys


def _format_checker() -> Any:
    from jsonschema import FormatChecker

    checker = FormatChecker()

    @checker.checks("date-time", raises=ValueError)
    def _date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        moment = datetime.fromisoformat(value)
        return moment.tzinfo is not None

    @checker.checks("uri", raises=ValueError)
    def _uri(value: object) -> bool:
        return not isinstance(value, str) or bool(urlsplit(value).scheme)

    @checker.checks("uuid", raises=ValueError)
    def _uuid(value: object) -> bool:
        return not isinstance(value, str) or str(uuid.UUID(value)) == value.lower()

    return checker


def _validator(schema: Mapping[str, Any]) -> Any:
    from jsonschema import Draft202012Validator

    registry, _, _ = _registry_and_schemas()
    return Draft202012Validator(schema, registry=registry, format_checker=_format_checker())


def _facets(event: Mapping[str, Any]) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    """(where, key, facet) for every facet of an event."""
    yield from (("run", k, v) for k, v in event["run"].get("facets", {}).items())
    yield from (("job", k, v) for k, v in event["job"].get("facets", {}).items())
    for side in ("inputs", "outputs"):
        for item in event.get(side, []):
            for group in ("facets", "inputFacets", "outputFacets"):
                for key, value in item.get(group, {}).items():
                    yield (f"{side}[{item['name']}].{group}", key, value)


def validate_event(event: Mapping[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` / ``AssertionError`` unless the event is valid."""
    registry, schemas, facet_keys = _registry_and_schemas()
    core = schemas["https://openlineage.io/spec/2-0-2/OpenLineage.json"]
    _validator(core).validate(event)
    for where, key, value in _facets(event):
        url = value["_schemaURL"]
        document, _, pointer = url.partition("#")
        assert document in schemas, f"{where}.{key}: {url} is not a local OpenLineage schema"
        assert facet_keys.get(document) == key, f"{where}: {url} defines no facet {key!r}"
        resolved = registry.resolver().lookup(url).contents
        assert pointer.startswith("/$defs/"), url
        _validator({"$ref": url, "$defs": {}} | {"$id": "urn:facet-check"}).validate(value)
        assert resolved, url
