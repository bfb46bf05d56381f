"""Keep credentials out of everything headrace shows or stores.

>>> redact("postgresql://app:s3cret@db:5432/prod")
'postgresql://app:***@db:5432/prod'
>>> redact("redis://:tok3n@cache:6379/0 and https://u:p@x/y")
'redis://:***@cache:6379/0 and https://u:***@x/y'
>>> redact("postgresql://u:ab/cd+ef==@db/x")
'postgresql://u:***@db/x'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["redact", "redact_mapping"]

_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/?#@\s]*:)(?P<secret>[^@\s]+)@")
_SECRET_PAIR = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|secret|token|api_key|apikey)\s*[=:]\s*)(?P<value>[^\s&;,]+)",
    re.IGNORECASE,
)
_SECRET_KEYS = re.compile(r"password|passwd|secret|token|api_?key|credential", re.IGNORECASE)


def redact(text: str) -> str:
    """Mask passwords in URLs and ``password=...``-style pairs inside ``text``."""
    text = _URL_PASSWORD.sub(r"\g<head>***@", text)
    return _SECRET_PAIR.sub(r"\g<key>***", text)


def redact_mapping(values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``values`` with secret-looking keys masked and URLs redacted, recursively."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            out[key] = redact_mapping(value)
        elif _SECRET_KEYS.search(str(key)) and value not in (None, ""):
            out[key] = "***"
        elif isinstance(value, str):
            out[key] = redact(value)
        else:
            out[key] = value
    return out
