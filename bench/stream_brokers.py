"""Streaming over brokers: the sliding job's throughput from Kafka and NATS next to the log.

    .venv/bin/python bench/stream_brokers.py                    # 1 M events, 10 k keys, all
    .venv/bin/python bench/stream_brokers.py --cases log,kafka  # some of them
    .venv/bin/python bench/stream_brokers.py --smoke            # 20 k events, prints only

Workload: ``bench/stream.py``'s ``sliding`` case (the same events file, ``data_path``; the same
project, ``make_project``; mean / count / max of ``value`` over 1 s, 10 s and 1 min per key,
one output row per event to the online store and the offline log, checkpoints every second).
Only the source differs:

1. ``log``: the embedded log (``[stream] broker = "log"``, the default).
2. ``kafka``: Tansu, a Kafka-compatible broker with memory storage, started on a free loopback
   port for this case (``headrace.testing.brokers.start_tansu``) and stopped by its PID after.
3. ``nats``: NATS JetStream at ``--nats-url`` (already running; file storage), a stream of its
   own per run, deleted afterwards.

Each case runs in a fresh child process (``_runner.run_child``) with ``POLARS_MAX_THREADS=1``.
The child first sends every event to a new topic with 4 partitions, keyed by ``key``, through
headrace's producer (``TopicWriter``: JSON messages for the brokers; that rate is reported as
``produce_events_per_s``), then times one ``run_stream(until_end=True)`` that reads them all
(it must see every event, none late). Measured: wall-clock events/s of that run and events per
CPU-second of the child (``time.process_time``: every thread of the job's process, the broker
client's included; the broker's own process is not counted, and it runs on the other core).
The run's wall time includes joining the Kafka group (``startup_seconds``: until the first batch
was processed; Tansu holds a group's first join for half the session timeout, set to 6 s here)
and the final empty poll (``tail_seconds``, ``--poll-timeout``); ``steady_events_per_s`` leaves
both out (first to last batch). All cases use the same options.

Results: ``bench/results/stream-brokers-<date>.json`` (not with ``--smoke``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _runner import fmt, run_child  # noqa: E402
from stream import SLIDING, data_path, make_project  # noqa: E402

CASES = ("log", "kafka", "nats")
PARTITIONS = 4
CHUNK = 200_000
DECLARATION = 'pipeline.stream("events", '
# Tansu holds a new consumer group's first join for about half the session timeout (librdkafka's
# default 45 s: ~23 s before the first message); 6 s gives ~3 s, Kafka's default initial delay.
KAFKA_OPTIONS = '\n[stream.options]\n"session.timeout.ms" = "6000"\n'


# -- child --------------------------------------------------------------------------------


def broker_project(root: Path, url: str | None, topic: str) -> Path:
    """The sliding project of bench/stream.py, reading ``topic`` from broker ``url``."""
    make_project(root, SLIDING, disorder="5s")
    settings = root / "headrace.toml"
    text = settings.read_text()
    assert "[stream]\n" in text, text
    broker = f'broker = "{url}"\n' if url else ""
    text = text.replace("[stream]\n", f"[stream]\n{broker}partitions = {PARTITIONS}\n", 1)
    kafka = url is not None and url.startswith("kafka://")
    settings.write_text(text + (KAFKA_OPTIONS if kafka else ""))
    pipeline = root / "pipeline.py"
    code = pipeline.read_text()
    assert code.count(DECLARATION) == 1, "bench/stream.py's stream declaration changed"
    pipeline.write_text(code.replace(DECLARATION, f"{DECLARATION}topic={topic!r}, "))
    return root


def child_case(
    case: str, events_path: Path, work: Path, url: str | None, topic: str, poll_timeout: float
) -> dict[str, Any]:
    """Send the events to ``topic``, then time one ``run_stream(until_end=True)`` over them."""
    import headrace as hr
    from headrace.engines.stream.runtime import JobStats, StreamOptions
    from headrace.project.stream_job import run_stream
    from headrace.project.streams import TopicWriter

    root = broker_project(work / case, url, topic)
    frame = pl.read_parquet(events_path)
    with hr.Project.open(root) as project:
        settings = project.settings.stream
        assert settings.broker == (url or "log"), settings
        assert project.pipeline().streams["events"].topic == topic
        produce0 = time.perf_counter()
        with TopicWriter(project, topic) as writer:
            for chunk in frame.iter_slices(CHUNK):
                writer.send(chunk, key="key")
        produced = time.perf_counter() - produce0

        batches: list[tuple[float, int]] = []  # (when a batch was done, events so far)

        def on_batch(stats: JobStats) -> None:
            batches.append((time.perf_counter(), stats.events))

        options = StreamOptions(
            checkpoint_interval=settings.checkpoint_interval,
            max_batch=settings.max_batch,
            poll_timeout=poll_timeout,
            until_end=True,
        )
        cpu0, wall0 = time.process_time(), time.perf_counter()
        stats = run_stream(project, options=options, on_batch=on_batch)
        end = time.perf_counter()
        wall, cpu = end - wall0, time.process_time() - cpu0
    assert stats.events == frame.height, stats
    assert stats.late == 0, stats
    return {
        "case": case,
        "broker": url or "log",
        "topic": topic,
        "partitions": PARTITIONS,
        "events": stats.events,
        "produce_seconds": round(produced, 3),
        "produce_events_per_s": round(frame.height / produced),
        "emitted": stats.emitted,
        "quarantined": stats.quarantined,
        "checkpoints": stats.checkpoints,
        "batches": stats.batches,
        "seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "events_per_s": round(stats.events / wall),
        "events_per_cpu_s": round(stats.events / cpu),
        "startup_seconds": round(batches[0][0] - wall0, 3) if batches else None,
        "tail_seconds": round(end - batches[-1][0], 3) if batches else None,
        "steady_events_per_s": _steady(batches),
        "poll_timeout": poll_timeout,
        "polars_threads": pl.thread_pool_size(),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def _steady(batches: list[tuple[float, int]]) -> int | None:
    """Events/s from the end of the first batch to the end of the last (no startup, no tail)."""
    if len(batches) < 2 or batches[-1][0] <= batches[0][0]:
        return None
    (t0, n0), (t1, n1) = batches[0], batches[-1]
    return round((n1 - n0) / (t1 - t0))


# -- parent -------------------------------------------------------------------------------


@contextlib.contextmanager
def tansu() -> Any:
    """A Tansu broker for one case: ``kafka://127.0.0.1:<port>``; stopped (by PID) after."""
    from headrace.testing.brokers import start_tansu

    bootstrap, stop = start_tansu()
    try:
        yield f"kafka://{bootstrap}"
    finally:
        stop()


@contextlib.contextmanager
def nats_stream(url: str, topic: str) -> Any:
    """NATS at ``url`` for one case; the JetStream stream ``topic`` is deleted after."""
    try:
        yield url
    finally:
        import nats

        async def drop() -> None:
            client = await nats.connect(url, connect_timeout=5)
            try:
                with contextlib.suppress(Exception):
                    await client.jetstream().delete_stream(topic)
            finally:
                await client.close()

        try:
            asyncio.run(drop())
        except Exception as exc:  # report; the case keeps its own result
            print(f"  could not delete JetStream stream {topic!r}: {exc}", flush=True)


def run_case(
    case: str, events: int, args: argparse.Namespace, work: Path, note: str | None
) -> dict[str, Any]:
    """One case in a fresh child process (POLARS_MAX_THREADS=1), its broker around it."""
    topic = "events" if case == "log" else f"bench-events-{secrets.token_hex(4)}"
    broker: Callable[[], contextlib.AbstractContextManager[Any]]
    if case == "kafka":
        broker = tansu
    elif case == "nats":
        broker = lambda: nats_stream(args.nats_url, topic)  # noqa: E731
    else:
        broker = contextlib.nullcontext
    me = [sys.executable, str(Path(__file__).resolve())]
    try:
        with broker() as url:
            command = [*me, "--child", case, "--events", str(events), "--keys", str(args.keys),
                       "--work", str(work), "--topic", topic,
                       "--poll-timeout", str(args.poll_timeout)]  # fmt: skip
            if url:
                command += ["--url", url]
            record = run_child(command, log=work / "logs" / f"{case}.log", timeout=3600)
    except Exception as exc:  # a broker that does not start fails its case only
        record = {"case": case, "error": f"{type(exc).__name__}: {exc}"}
    if note:
        record["note"] = note
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--kafka-events", type=int, help="fewer events for kafka only")
    parser.add_argument("--nats-events", type=int, help="fewer events for nats only")
    parser.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    parser.add_argument("--poll-timeout", type=float, default=1.0)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--child", choices=CASES)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--url")
    parser.add_argument("--topic", default="events")
    args = parser.parse_args()
    if args.child:
        path = data_path(args.events, args.keys)
        record = child_case(args.child, path, args.work, args.url, args.topic, args.poll_timeout)
        print(json.dumps(record))
        return
    if args.smoke:
        args.events, args.kafka_events, args.nats_events = 20_000, None, None
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if not cases or any(c not in CASES for c in cases):
        parser.error(f"--cases: choose from {', '.join(CASES)}")
    sizes = {"kafka": args.kafka_events, "nats": args.nats_events}
    work = Path(tempfile.mkdtemp(prefix="hr-stream-brokers-"))
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "events": args.events,
        "keys": args.keys,
        "workload": "bench/stream.py sliding (3 windows x mean/count/max), POLARS_MAX_THREADS=1",
        "records": [],
    }
    os.environ["POLARS_MAX_THREADS"] = "1"
    try:
        print(f"{args.events:,} events, {args.keys:,} keys ({data_path(args.events, args.keys)})",
              flush=True)  # fmt: skip
        baseline: dict[str, Any] = {}
        for case in cases:
            events = sizes.get(case) or args.events
            note = None
            if events != args.events:
                data_path(events, args.keys)
                note = f"{events:,} events instead of {args.events:,} (--{case}-events)"
            record = run_case(case, events, args, work, note)
            if case == "log" and "error" not in record:
                baseline = record
            elif baseline and "error" not in record:
                for field in ("events_per_s", "events_per_cpu_s"):
                    record[f"{field}_vs_log"] = round(record[field] / baseline[field], 3)
            results["records"].append(record)
            ratio = record.get("events_per_s_vs_log")
            print(f"  {case:5s} {fmt(record.get('events_per_s'), ',.0f')} events/s, "
                  f"{fmt(record.get('events_per_cpu_s'), ',.0f')} per CPU-second"
                  f", {fmt(record.get('steady_events_per_s'), ',.0f')} steady"
                  f"{'' if ratio is None else f', {ratio:.2f}x the embedded log'} "
                  f"(produce {fmt(record.get('produce_events_per_s'), ',.0f')} events/s, "
                  f"startup {fmt(record.get('startup_seconds'), '.1f')} s) "
                  f"{record.get('note') or ''}{record.get('error', '')}", flush=True)  # fmt: skip
    finally:
        os.environ.pop("POLARS_MAX_THREADS", None)
        if any("error" in r for r in results["records"]):
            print(f"children's logs kept in {work / 'logs'}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if not args.smoke:
        out = HERE / "results" / f"stream-brokers-{datetime.now(UTC):%Y-%m-%d}.json"
        out.write_text(json.dumps(results, indent=2, default=str))
        print(f"results: {out}")
    failed = [r["case"] for r in results["records"] if "error" in r]
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
