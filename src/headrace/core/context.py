"""What a node function may learn about the run it is part of."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from headrace.core.partitions import PartitionScheme

__all__ = ["NodeContext"]


@dataclass(frozen=True)
class NodeContext:
    """Handed to a node function through a parameter named ``context``.

    Example:
        >>> import headrace as hr
        >>> pipeline = hr.Pipeline("ctx")
        >>> @pipeline.source
        ... def days(context: hr.NodeContext) -> pl.LazyFrame:
        ...     return pl.LazyFrame({"partition": [context.partition]})

    """

    run_id: str
    node: str
    attempt: int = 1
    partition: str | None = None
    """The partition key this call computes, or None when the node runs over all its data."""
    scheme: PartitionScheme | None = None
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def logger(self) -> logging.Logger:
        """A logger named after the node (``headrace.node.<name>``)."""
        return logging.getLogger(f"headrace.node.{self.node}")

    def partition_filter(self) -> pl.Expr:
        """A predicate selecting this call's partition (always true when unpartitioned).

        Sources should apply it to what they read, so that a lazy scan reads only the
        partition; headrace applies it to the output again either way.
        """
        if self.partition is None or self.scheme is None:
            return pl.lit(value=True)
        return self.scheme.filter(self.partition)
