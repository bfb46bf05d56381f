"""Open a stream consumer or producer from a broker URL.

=========================  ==========================================  ===================
URL                        broker                                      needs
=========================  ==========================================  ===================
``kafka://host:port[,..]`` Kafka (or Redpanda, Tansu, ...)             ``headrace[kafka]``
``nats://host:port``       NATS JetStream (also ``tls://``)            ``headrace[nats]``
``redis://host:port/db``   Redis Streams (also ``rediss://``)          ``headrace[redis]``
=========================  ==========================================  ===================

``options`` of :func:`open_consumer` (all text, as they come from configuration):

``reconnect_timeout``
    seconds a broker may stay unreachable before :class:`~headrace.errors.BrokerError`
    (default 30).
any other key, Kafka only
    a librdkafka setting passed as is (``security.protocol``, ``sasl.username``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import polars as pl

from headrace.core.redaction import redact
from headrace.errors import ConfigError

if TYPE_CHECKING:
    from headrace.connectors.stream.base import Rebalance, StreamConsumer, StreamProducer

__all__ = ["SCHEMES", "open_consumer", "open_producer"]

SCHEMES = ("kafka", "nats", "tls", "redis", "rediss")
"""URL schemes headrace can open (``log``, the embedded log, comes next)."""

_EXTRA = {"kafka": "kafka", "nats": "nats", "tls": "nats", "redis": "redis", "rediss": "redis"}
_RECONNECT = "reconnect_timeout"


def open_consumer(
    url: str,
    topic: str,
    *,
    schema: Mapping[str, pl.DataType],
    group: str,
    rebalance: Rebalance | None = None,
    options: Mapping[str, str] | None = None,
) -> StreamConsumer:
    """A consumer of ``topic`` at ``url`` decoding messages into ``schema``.

    ``group`` names the consumer group (Kafka, Redis); NATS consumers are per worker and
    ephemeral, so it only appears in messages there. ``rebalance`` is the engine's listener
    for Kafka's group assignments (ignored by the others, whose partitions the engine assigns).
    """
    scheme = _scheme(url)
    settings = dict(options or {})
    reconnect = _reconnect_timeout(settings, url)
    if scheme == "kafka":
        try:
            from headrace.connectors.stream.kafka import KafkaConsumer
        except ImportError as exc:
            raise _missing(url, scheme, exc) from exc
        return KafkaConsumer(
            _bootstrap(url),
            topic,
            schema=schema,
            group=group,
            rebalance=rebalance,
            config=settings,
            reconnect_timeout=reconnect,
        )
    _no_other_options(settings, url)
    if scheme in ("nats", "tls"):
        try:
            from headrace.connectors.stream.nats import NatsConsumer
        except ImportError as exc:
            raise _missing(url, scheme, exc) from exc
        return NatsConsumer(url, topic, schema=schema, reconnect_timeout=reconnect)
    if scheme in ("redis", "rediss"):
        try:
            from headrace.connectors.stream.redis_streams import RedisStreamConsumer
        except ImportError as exc:
            raise _missing(url, scheme, exc) from exc
        return RedisStreamConsumer(
            url, topic, schema=schema, group=group, reconnect_timeout=reconnect
        )
    raise _unknown(url, scheme)


def open_producer(url: str, topic: str, *, partitions: int = 4) -> StreamProducer:
    """A producer appending to ``topic`` at ``url``; a new topic gets ``partitions``."""
    scheme = _scheme(url)
    if scheme == "kafka":
        try:
            from headrace.connectors.stream.kafka import KafkaProducer
        except ImportError as exc:
            raise _missing(url, scheme, exc) from exc
        return KafkaProducer(_bootstrap(url), topic, partitions=partitions)
    if scheme in ("nats", "tls"):
        try:
            from headrace.connectors.stream.nats import NatsProducer
        except ImportError as exc:
            raise _missing(url, scheme, exc) from exc
        return NatsProducer(url, topic, partitions=partitions)
    if scheme in ("redis", "rediss"):
        try:
            from headrace.connectors.stream.redis_streams import RedisStreamProducer
        except ImportError as exc:
            raise _missing(url, scheme, exc) from exc
        return RedisStreamProducer(url, topic, partitions=partitions)
    raise _unknown(url, scheme)


def _scheme(url: str) -> str:
    scheme = urlsplit(url).scheme.lower()
    if not scheme:
        msg = f"stream URL {redact(url)!r} has no scheme; write it as one of " + ", ".join(
            f"{s}://..." for s in SCHEMES
        )
        raise ConfigError(msg)
    return scheme


def _unknown(url: str, scheme: str) -> ConfigError:
    # The embedded log is not a URL: a project opens it for `[stream] broker = "log"`.
    accepted = ", ".join(f"{s}://" for s in SCHEMES)
    msg = f"stream URL {redact(url)!r} has scheme {scheme!r}; use one of {accepted}"
    return ConfigError(msg)


def _bootstrap(url: str) -> str:
    """``kafka://a:9092,b:9092`` -> ``a:9092,b:9092`` (librdkafka's bootstrap.servers)."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        msg = (
            f"{redact(url)}: put Kafka credentials in options (sasl.username, sasl.password), "
            "not in the URL"
        )
        raise ConfigError(msg)
    hosts = parts.netloc
    if not hosts or parts.path.strip("/"):
        msg = f"{redact(url)!r} is not a Kafka URL; write kafka://host:port[,host:port...]"
        raise ConfigError(msg)
    return hosts


def _reconnect_timeout(settings: dict[str, str], url: str) -> float:
    text = settings.pop(_RECONNECT, "30")
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        msg = f"{_RECONNECT}={text!r} for {redact(url)}; give a number of seconds above 0"
        raise ConfigError(msg)
    return value


def _no_other_options(settings: Mapping[str, str], url: str) -> None:
    if settings:
        msg = (
            f"unknown stream option(s) {sorted(settings)} for {redact(url)}; this broker "
            f"takes only {_RECONNECT} (Kafka passes other options to librdkafka)"
        )
        raise ConfigError(msg)


def _missing(url: str, scheme: str, exc: ImportError) -> ConfigError:
    extra = _EXTRA[scheme]
    msg = (
        f"{redact(url)} needs the Python package {exc.name or 'of the broker client'!r}, "
        f"which is not installed; pip install 'headrace[{extra}]'"
    )
    return ConfigError(msg)
