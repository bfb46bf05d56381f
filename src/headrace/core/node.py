"""Nodes: the typed steps of a pipeline, as plain immutable data.

A node wraps a plain function (or a DuckDB SQL text). The function's parameters say what it
needs; they are bound in this order:

1. a parameter named ``context`` receives the :class:`~headrace.core.context.NodeContext`;
2. a parameter listed in the node's explicit ``inputs`` mapping receives that upstream node's
   output;
3. a parameter listed in the node's ``config`` keys receives that config value (falling back to
   the parameter's default);
4. any other parameter with a default value is an optional config value;
5. any other parameter receives the output of the upstream node of the same name.

Frame inputs arrive as ``polars.LazyFrame``; annotate a parameter ``polars.DataFrame`` to
receive it collected.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import inspect
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from headrace.core.contract import Contract
from headrace.core.drift import Drift
from headrace.core.features import FeatureView
from headrace.core.partitions import PartitionScheme
from headrace.core.source import SourceSpec

__all__ = ["Binding", "BindingKind", "Node", "NodeKind", "RetryPolicy", "function_source"]

CONTEXT_PARAMETER = "context"


class NodeKind(enum.StrEnum):
    """What a node does in the pipeline."""

    SOURCE = "source"
    """Reads the outside world; takes no upstream inputs; its output is a dataset."""
    TRANSFORM = "transform"
    """Maps input frames to an output frame (Python or SQL)."""
    SINK = "sink"
    """Writes to the outside world; returns nothing; nothing is stored for it."""


class BindingKind(enum.StrEnum):
    """Where a function parameter gets its value from."""

    INPUT = "input"
    CONFIG = "config"
    CONTEXT = "context"


@dataclass(frozen=True)
class Binding:
    """One function parameter and where its value comes from."""

    parameter: str
    kind: BindingKind
    source: str
    """The upstream node name (INPUT), the config key (CONFIG) or ``context``."""
    has_default: bool = False
    default: Any = None
    wants_dataframe: bool = False
    """True when the parameter is annotated ``polars.DataFrame`` (collect before the call)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failing node is tried again and how long to wait between tries.

    The wait before try ``n`` (n >= 2) is ``delay * backoff ** (n - 2)`` seconds, capped at
    ``max_delay``.
    """

    retries: int = 0
    delay: float = 0.5
    backoff: float = 2.0
    max_delay: float = 60.0

    def wait_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (1-based; the first attempt never waits)."""
        if attempt <= 1:
            return 0.0
        return float(min(self.max_delay, self.delay * self.backoff ** (attempt - 2)))


@dataclass(frozen=True)
class Node:
    """A declared pipeline step. Build nodes through :class:`~headrace.core.pipeline.Pipeline`."""

    name: str
    kind: NodeKind
    fn: Callable[..., Any] | None
    bindings: tuple[Binding, ...]
    sql: str | None = None
    ephemeral: bool = False
    partitions: PartitionScheme | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float | None = None
    description: str = ""
    version: str | None = None
    """An explicit logic version; when set it replaces the source-code hash in cache keys."""
    tags: Mapping[str, str] = field(default_factory=dict)
    contract: Contract | None = None
    """Validate the output: bad rows go to the ``<node>__quarantine`` dataset."""
    gate: float | None = 0.9
    """Fail the node when its output's quality score is below this (None: never on score)."""
    cache: bool = True
    """False: run every time even when code, config and inputs are unchanged (sources default
    to False, since what they read can change outside headrace; their output is still compared
    by content, so an unchanged read does not re-run anything downstream)."""
    source: SourceSpec | None = None
    """An ingest node's declared source (files or a database), read by a connector."""
    features: FeatureView | None = None
    """A feature view node: its output is the view's offline feature dataset."""
    drift: Drift | None = None
    """Compare each new output version with a reference version (see :class:`Drift`)."""

    @property
    def inputs(self) -> tuple[str, ...]:
        """Names of the upstream nodes, in parameter order, without repeats."""
        seen: dict[str, None] = {}
        for binding in self.bindings:
            if binding.kind is BindingKind.INPUT:
                seen.setdefault(binding.source, None)
        return tuple(seen)

    @property
    def config_keys(self) -> tuple[str, ...]:
        """Config keys the node reads (for an ingest node, those its source names)."""
        keys = [b.source for b in self.bindings if b.kind is BindingKind.CONFIG]
        if self.source is not None:
            keys.extend(self.source.config_keys())
        return tuple(dict.fromkeys(keys))

    @property
    def persisted(self) -> bool:
        """True when the node's output is written as a versioned dataset."""
        return not self.ephemeral and self.kind is not NodeKind.SINK

    def code_hash(self) -> str:
        """A stable hash of the node's logic: its declared version, SQL text or function source.

        The hash covers the function's own source code (dedented), not the helpers it calls:
        set ``version=`` on the node to force a new hash when only a helper changed.
        """
        if self.features is not None:
            return self.features.fingerprint()  # the registry finds a view version's data by it
        digest = hashlib.blake2b(digest_size=16)
        digest.update(self.kind.value.encode())
        if self.version is not None:
            digest.update(b"version:" + self.version.encode())
        elif self.sql is not None:
            digest.update(b"sql:" + " ".join(self.sql.split()).encode())
        elif self.source is not None:
            digest.update(b"source:" + repr(self.source).encode())
        elif self.fn is not None:
            digest.update(b"py:" + _function_source(self.fn).encode())
        if self.contract is not None:
            digest.update(b"contract:" + repr(self.contract).encode())
            digest.update(f"gate:{self.gate}".encode())
        return digest.hexdigest()


def _function_source(fn: Callable[..., Any]) -> str:
    source = function_source(fn)
    if source is not None:
        return source
    code = getattr(fn, "__code__", None)
    if code is not None:
        return repr((code.co_code, code.co_consts, code.co_names))
    return repr(fn)


@functools.lru_cache(maxsize=8192)
def function_source(fn: Callable[..., Any]) -> str | None:
    """A function's dedented source text, or None when Python cannot find it.

    Cached per function object: reading source costs ~0.1 ms (tokenizing the file), and every
    run hashes every node's code and lineage events carry it.
    """
    try:
        return textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return None
