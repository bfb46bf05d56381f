"""Monitoring test helpers: a loopback HTTP receiver's records, a small pipeline."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

import headrace as hr


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 that records requests and answers scripted statuses."""

    url: str
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    """Statuses to answer, in order; then 200."""


T0 = datetime(2024, 3, 1, tzinfo=UTC)


def shop_pipeline(bad_rows: int = 1, *, rows: int = 4, name: str = "shop") -> hr.Pipeline:
    """orders (source, event time ``ts``) -> clean (validated: amount not null)."""
    pipeline = hr.Pipeline(name)
    amounts = [10.0 * (i + 1) for i in range(rows)] + [None] * bad_rows

    @pipeline.source(tags={"event_time": "ts"})
    def orders() -> pl.DataFrame:
        return pl.DataFrame(
            {
                "order": list(range(len(amounts))),
                "ts": [T0 + timedelta(hours=i) for i in range(len(amounts))],
                "amount": amounts,
            }
        )

    @pipeline.transform(
        contract=hr.Contract("clean", fields=[hr.Field("amount", "Float64", nullable=False)]),
        gate=0.5,
    )
    def clean(orders: pl.DataFrame) -> pl.DataFrame:
        return orders

    return pipeline


ProjectFactory = Callable[[str], hr.Project]
