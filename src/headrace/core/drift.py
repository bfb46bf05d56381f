"""The ``drift=`` node option: compare each new output version with a reference."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Drift"]


@dataclass(frozen=True)
class Drift:
    """Check each new version of a node's output for drift.

    ``reference``: a fixed dataset version to compare with (default: the version before the
    new one). ``columns``: the columns to compare (default: every number, string,
    categorical and boolean column). Results are stored per version and feed the ``drift``
    alert rules.

    >>> Drift(reference=3, columns=["dep_delay"])
    Drift(reference=3, columns=('dep_delay',))
    """

    reference: int | None = None
    columns: Sequence[str] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
