"""Windows of a windowed feature view: tumbling, hopping and session, declared as data.

A plain :class:`~headrace.core.features.FeatureView` computes *sliding* ("as of now")
aggregations: one value per event, over the trailing ``(t - w, t]``. A view with
``window=`` instead emits one row per entity and window, when the window is complete:

- ``Tumbling("1m")``: back-to-back windows ``[k*size, (k+1)*size)`` aligned to the Unix
  epoch (UTC); every event is in exactly one.
- ``Hopping("10m", every="1m")``: windows of ``size`` starting every ``every`` (aligned to the
  epoch); an event is in ``size / every`` of them.
- ``Session(gap="30m")``: an entity's events closer than ``gap`` to the previous one form a
  session ``[first, last + gap)``; a quiet ``gap`` ends it.

The row's event-time column holds the window's end (when its value became known), and
``window_start`` its start, so point-in-time training sets never see a window before it
closed.

>>> Tumbling("1m").size
datetime.timedelta(seconds=60)
>>> Hopping("10m", every="5m").windows_per_event
2
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from headrace.errors import FeatureDefinitionError

__all__ = ["WINDOW_START", "Hopping", "Session", "Tumbling", "Window", "window_from_definition"]

WINDOW_START = "window_start"
"""The column a windowed view's rows carry their window's start in."""


def _duration(value: str | timedelta, what: str) -> timedelta:
    from headrace.core.features import parse_duration

    return parse_duration(value, what=what)


@dataclass(frozen=True)
class Tumbling:
    """Back-to-back windows of ``size``, aligned to the Unix epoch."""

    size: timedelta

    def __init__(self, size: str | timedelta) -> None:
        object.__setattr__(self, "size", _duration(size, "tumbling window size"))

    @property
    def every(self) -> timedelta:
        """How far apart window starts are (the size)."""
        return self.size

    @property
    def windows_per_event(self) -> int:
        """How many windows each event falls in (one)."""
        return 1

    def definition(self) -> dict[str, Any]:
        """A JSON-able description."""
        return {"kind": "tumbling", "size_seconds": self.size.total_seconds()}


@dataclass(frozen=True)
class Hopping:
    """Windows of ``size`` starting every ``every`` (``size`` a multiple of ``every``)."""

    size: timedelta
    every: timedelta

    def __init__(self, size: str | timedelta, *, every: str | timedelta) -> None:
        length = _duration(size, "hopping window size")
        step = _duration(every, "hopping window step (every)")
        if length < step or length % step:
            msg = (
                f"hopping window: size {length} must be a multiple of every {step}; "
                "use Tumbling for size == every"
            )
            raise FeatureDefinitionError(msg)
        object.__setattr__(self, "size", length)
        object.__setattr__(self, "every", step)

    @property
    def windows_per_event(self) -> int:
        """How many windows each event falls in."""
        return self.size // self.every

    def definition(self) -> dict[str, Any]:
        """A JSON-able description."""
        return {
            "kind": "hopping",
            "size_seconds": self.size.total_seconds(),
            "every_seconds": self.every.total_seconds(),
        }


@dataclass(frozen=True)
class Session:
    """An entity's bursts of activity: a quiet ``gap`` ends a session."""

    gap: timedelta

    def __init__(self, gap: str | timedelta) -> None:
        object.__setattr__(self, "gap", _duration(gap, "session gap"))

    def definition(self) -> dict[str, Any]:
        """A JSON-able description."""
        return {"kind": "session", "gap_seconds": self.gap.total_seconds()}


Window = Tumbling | Hopping | Session


def window_from_definition(definition: dict[str, Any] | None) -> Window | None:
    """The window described by ``definition()`` (None: a sliding view)."""
    if definition is None:
        return None
    kind = definition["kind"]
    if kind == "tumbling":
        return Tumbling(timedelta(seconds=definition["size_seconds"]))
    if kind == "hopping":
        return Hopping(
            timedelta(seconds=definition["size_seconds"]),
            every=timedelta(seconds=definition["every_seconds"]),
        )
    return Session(timedelta(seconds=definition["gap_seconds"]))
