"""``[metrics]`` and ``[alerts]`` settings.

::

    [metrics]
    pushgateway = "http://127.0.0.1:9091"   # optional: push each batch run's metrics

    [alerts]
    default_sinks = ["log"]                 # sinks of the default rules and of rules without any

    [[alerts.rules]]
    name = "quality below 0.95"
    kind = "quality"            # quality | duration | failure | freshness | drift
                                # | quarantine_share | new_data
    threshold = 0.95            # optional: each kind has a default (see RULE_KINDS)
    nodes = ["flights_clean"]   # optional: only these nodes (node-level kinds)
    sinks = ["log", "ops"]

    [[alerts.rules]]
    name = "retrain on new flights"
    kind = "new_data"
    datasets = ["flights_clean"]
    sinks = ["retrain"]

    [alerts.sinks.ops]
    kind = "webhook"            # log | webhook | command
    url = "https://hooks.example.com/headrace"   # ${VAR} parts come from the environment
    retries = 3

    [alerts.sinks.retrain]
    kind = "command"
    command = ["python", "retrain.py"]   # gets the alert as JSON on stdin

Without ``[[alerts.rules]]`` the default rules apply (:func:`default_rules`): quality score
below 0.9, a run longer than one hour, a failed run — all to the ``default_sinks``.
``rules = []`` turns alerting off.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "RULE_KINDS",
    "SINK_KINDS",
    "AlertRule",
    "AlertSettings",
    "MetricsSettings",
    "RuleKind",
    "SinkSettings",
    "default_rules",
]


class MetricsSettings(BaseModel):
    """``[metrics]``: where batch runs push their metrics (Prometheus Pushgateway)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pushgateway: str | None = None
    """e.g. ``http://127.0.0.1:9091``; empty: metrics are only stored and served."""
    job: str = "headrace"
    """The Pushgateway ``job`` label; the grouping key adds ``pipeline``."""
    push_timeout: float = Field(default=10.0, gt=0)
    """Seconds a push may take before it is given up (a failed push never fails a run)."""


@dataclass(frozen=True)
class RuleKind:
    """What one kind of alert rule watches, and how it compares with its threshold."""

    name: str
    level: Literal["run", "node", "dataset"]
    """What one alert is about: a whole run, one node (partition) or datasets."""
    comparison: Literal["<", ">", ">=", ""]
    """How the observed value fires against the threshold (``observed <op> threshold``)."""
    default_threshold: float | None
    unit: str
    description: str
    severity: Literal["info", "warning", "critical"]
    bounds: tuple[float, float | None] = (0.0, None)
    """Allowed thresholds: (min, max or None)."""


RULE_KINDS: dict[str, RuleKind] = {
    kind.name: kind
    for kind in (
        RuleKind(
            "quality", "node", "<", 0.9, "score", "a node's quality score is below", "warning",
            (0.0, 1.0),
        ),
        RuleKind(
            "duration", "run", ">", 3600.0, "s",
            "the run (or, with nodes, a node) took longer than", "warning",
        ),
        RuleKind("failure", "node", "", None, "", "a node failed", "critical"),
        RuleKind(
            "freshness", "node", ">", 86400.0, "s",
            "the newest event time in a node's output is older than", "warning",
        ),
        RuleKind(
            "drift", "dataset", ">", 0.0, "share",
            "the share of drifted columns is above", "warning", (0.0, 1.0),
        ),
        RuleKind(
            "quarantine_share", "node", ">", 0.05, "share",
            "the share of a node's rows sent to quarantine is above", "warning", (0.0, 1.0),
        ),
        RuleKind(
            "new_data", "dataset", ">=", 1.0, "rows",
            "datasets got a new version in the run with at least this many rows", "info",
        ),
    )
}  # fmt: skip
"""Every rule kind by name. Thresholds are in base units: seconds, shares in [0, 1], rows."""

SINK_KINDS = ("log", "webhook", "command")
"""Where alerts can go: Python logging, an HTTP JSON POST, a command reading JSON on stdin."""

_Severity = Literal["info", "warning", "critical"]


def _hint(value: str, known: list[str]) -> str:
    close = difflib.get_close_matches(value, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class SinkSettings(BaseModel):
    """``[alerts.sinks.NAME]``: one place alerts go.

    ``kind = "log"``: the ``headrace.alerts`` Python logger. ``"webhook"``: a JSON POST to
    ``url`` (``${VAR}`` parts and ``headers`` values are read from the environment at send
    time), tried ``1 + retries`` times with exponential ``backoff`` on connection errors,
    timeouts, 429 and 5xx answers. ``"command"``: runs ``command`` (a list of arguments, or
    one string split like a shell would, never through a shell) with the alert JSON on stdin;
    a non-zero exit is a failed delivery.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    command: list[str] | str | None = None
    timeout: float = Field(default=10.0, gt=0)
    """Seconds per attempt (webhook) or for the whole command."""
    retries: int = Field(default=3, ge=0, le=10)
    backoff: float = Field(default=0.5, ge=0)
    """Seconds before the first retry; doubles after each."""


class AlertRule(BaseModel):
    """``[[alerts.rules]]``: when to alert and where to send it (see :data:`RULE_KINDS`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    kind: str
    threshold: float | None = None
    """Default per kind: quality 0.9, duration 3600 s, freshness 86400 s, quarantine_share
    0.05, drift 0 (any drifted column), new_data 1 row; failure takes none."""
    nodes: tuple[str, ...] = ()
    """Only these nodes (empty: all)."""
    datasets: tuple[str, ...] = ()
    """Only these datasets (``new_data`` and ``drift``; empty: all)."""
    pipelines: tuple[str, ...] = ()
    """Only runs of these pipelines (empty: all)."""
    sinks: tuple[str, ...] | None = None
    """Sink names (``log`` is built in); default: ``[alerts] default_sinks``."""
    severity: _Severity | None = None
    """Default per kind: failure critical, new_data info, the others warning."""

    @model_validator(mode="after")
    def _check(self) -> AlertRule:
        where = f"alert rule {self.name!r}"
        spec = RULE_KINDS.get(self.kind)
        if spec is None:
            known = list(RULE_KINDS)
            msg = (
                f"{where}: unknown kind {self.kind!r}{_hint(self.kind, known)}; set kind to one "
                f"of {', '.join(known)}"
            )
            raise ValueError(msg)
        if self.threshold is not None:
            if spec.default_threshold is None:
                msg = f"{where}: kind {self.kind!r} takes no threshold; remove it"
                raise ValueError(msg)
            low, high = spec.bounds
            if self.threshold < low or (high is not None and self.threshold > high):
                span = f"between {low:g} and {high:g}" if high is not None else f">= {low:g}"
                unit = f" ({spec.unit})" if spec.unit else ""
                msg = f"{where}: threshold {self.threshold:g} is out of range; use a value {span}"
                raise ValueError(msg + unit)
        if self.datasets and spec.level != "dataset":
            msg = f"{where}: kind {self.kind!r} is about nodes: filter with nodes = [...]"
            raise ValueError(msg)
        if self.nodes and self.kind == "drift":
            msg = f"{where}: drift is measured per dataset: filter with datasets = [...]"
            raise ValueError(msg)
        return self

    @property
    def spec(self) -> RuleKind:
        """The rule's kind."""
        return RULE_KINDS[self.kind]

    @property
    def effective_threshold(self) -> float | None:
        """The threshold, or the kind's default."""
        return self.threshold if self.threshold is not None else self.spec.default_threshold

    @property
    def effective_severity(self) -> _Severity:
        """The severity, or the kind's default."""
        return self.severity or self.spec.severity


def default_rules(sinks: tuple[str, ...] = ("log",)) -> tuple[AlertRule, ...]:
    """The rules in force when ``[alerts]`` names none (from the seed: quality < 0.9, > 1 h).

    >>> [(r.name, r.kind, r.effective_threshold) for r in default_rules()]
    [('quality below 0.9', 'quality', 0.9), ('run longer than 1 h', 'duration', 3600.0), ('run failed', 'failure', None)]
    """  # noqa: E501
    return (
        AlertRule(name="quality below 0.9", kind="quality", threshold=0.9, sinks=sinks),
        AlertRule(name="run longer than 1 h", kind="duration", threshold=3600.0, sinks=sinks),
        AlertRule(name="run failed", kind="failure", sinks=sinks),
    )


class AlertSettings(BaseModel):
    """``[alerts]``: rules evaluated after each run, and where alerts go."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: tuple[AlertRule, ...] | None = None
    """None (not set): the :func:`default_rules`; ``[]``: no alerts at all."""
    sinks: dict[str, SinkSettings] = Field(default_factory=dict)
    """Named sinks; ``log`` exists without being declared."""
    default_sinks: tuple[str, ...] = ("log",)
    """Sinks of the default rules and of rules that name none."""

    @model_validator(mode="after")
    def _check(self) -> AlertSettings:
        for name, sink in self.sinks.items():
            _check_sink(name, sink)
        known = sorted({"log", *self.sinks})
        for name in self.default_sinks:
            if name not in known:
                msg = (
                    f"[alerts] default_sinks names unknown sink {name!r}{_hint(name, known)}; "
                    f"declare [alerts.sinks.{name}] or use one of {', '.join(known)}"
                )
                raise ValueError(msg)
        seen: set[str] = set()
        for rule in self.rules or ():
            if rule.name in seen:
                msg = f"alert rule {rule.name!r} is declared twice; give each rule its own name"
                raise ValueError(msg)
            seen.add(rule.name)
            for name in rule.sinks or ():
                if name not in known:
                    msg = (
                        f"alert rule {rule.name!r}: unknown sink {name!r}{_hint(name, known)}; "
                        f'declare [alerts.sinks.{name}] with kind = "log", "webhook" or '
                        f'"command", or use one of {", ".join(known)}'
                    )
                    raise ValueError(msg)
        return self

    def effective_rules(self) -> tuple[AlertRule, ...]:
        """The configured rules (each with its sinks filled in), or the defaults."""
        if self.rules is None:
            return default_rules(self.default_sinks)
        return tuple(
            rule
            if rule.sinks is not None
            else rule.model_copy(update={"sinks": self.default_sinks})
            for rule in self.rules
        )


def _check_sink(name: str, sink: SinkSettings) -> None:
    where = f"[alerts.sinks.{name}]"
    if sink.kind not in SINK_KINDS:
        msg = (
            f"{where}: unknown kind {sink.kind!r}{_hint(sink.kind, list(SINK_KINDS))}; set kind "
            f"to one of {', '.join(SINK_KINDS)}"
        )
        raise ValueError(msg)
    if sink.kind == "webhook":
        if not sink.url or not sink.url.startswith(("http://", "https://")):
            msg = f'{where}: a webhook needs url = "http(s)://..."'
            raise ValueError(msg)
        if sink.command is not None:
            msg = f"{where}: a webhook takes url, not command; remove command"
            raise ValueError(msg)
    elif sink.kind == "command":
        if not sink.command:
            msg = f'{where}: a command sink needs command = ["program", "arg", ...]'
            raise ValueError(msg)
        if sink.url is not None:
            msg = f"{where}: a command sink takes command, not url; remove url"
            raise ValueError(msg)
    elif sink.url is not None or sink.command is not None:
        msg = f"{where}: a log sink takes neither url nor command; remove them"
        raise ValueError(msg)
