"""Streaming: throughput and latency of `headrace stream run`, and Bytewax side by side.

    .venv/bin/python bench/stream.py                      # 2 M events, 10 k keys, all cases
    .venv/bin/python bench/stream.py --sides headrace     # no Bytewax
    .venv/bin/python bench/stream.py --smoke              # CI: headrace only, 100 k events

Data (seeded, ``bench/data/stream_<events>_<keys>.parquet``): ``key`` (10 k keys, uniform),
``ts`` (UTC, 1 ms apart from 2026-01-01, each event off by up to 1 s: out of order within the
declared 5 s disorder bound, so nothing is late) and ``value`` (uniform [0, 1)).

Cases, each in a fresh child process (``_runner.run_child``); the events are appended to the
embedded log before the clock starts, checkpoints every second (positions, window state,
offline-log appends, as in production):

1. ``sliding``: a feature view with mean / count / max of ``value`` over 3 trailing windows
   (1 s, 10 s, 1 min) per key: one output row per event, to the online store (SQLite) and the
   offline log. Run twice: Polars on all cores, and on one core (``POLARS_MAX_THREADS=1``
   and the process pinned to one CPU, its writer threads included).
2. ``tumbling``: mean / count / max per key and 1-minute tumbling window; the same events
   through Bytewax (``bench/peers/stream_bytewax.py`` in ``bench/.venvs/bytewax``, its local
   input and ``fold_window``, both clock settings); the window outputs must be identical
   (counts and maxima equal, means within 1e-9 relative).
3. ``latency``: the sliding view on live events: a producer process appends events every
   10 ms while the job runs, each stamped with its own time over the tick just past (as
   events made one by one; the newest time stays pending until a newer event arrives).
   First flat out for 10 s, to measure the rate the job sustains; then at half that rate
   for ``--latency-seconds``, and again at a quarter of it. Latency = when the online-store
   write holding an event's feature row returned, minus the event's time; p50 / p99 after
   the first tenth of the writes.

Targets (product brief): >= 500 k events/s per core from the embedded log; p99 <= 500 ms at
half load; >= 10x Bytewax's best configuration. Results: ``bench/results/stream-<date>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _runner import fmt, run_child  # noqa: E402

BASE = datetime(2026, 1, 1, tzinfo=UTC)
JITTER_MS = 1_000
WINDOWS = ("1s", "10s", "1m")
PIPELINE = '''"""The streaming benchmark's pipeline (written by bench/stream.py)."""

import polars as pl

import headrace as hr

pipeline = hr.Pipeline("stream_bench")


@pipeline.source
def events() -> pl.LazyFrame:
    return pl.LazyFrame(schema={"key": pl.String, "ts": pl.Datetime("us", "UTC"),
                                "value": pl.Float64})


SCHEMA = {"key": pl.String, "ts": pl.Datetime("us", "UTC"), "value": pl.Float64}
pipeline.stream("events", event_time="ts", disorder="%(disorder)s", key="key", schema=SCHEMA)
KEY = hr.Entity("key", ["key"])
%(views)s
'''
SLIDING = f"""pipeline.features(hr.FeatureView(
    "sliding", entity=KEY, source="events", event_time="ts", ttl="1d",
    features=[hr.Aggregate("value", f, w) for w in {WINDOWS!r} for f in ("mean", "count", "max")],
))"""
TUMBLING = """pipeline.features(hr.FeatureView(
    "tumbling", entity=KEY, source="events", event_time="ts", ttl="1d",
    window=hr.Tumbling("1m"),
    features=[hr.Aggregate("value", "mean", name="mean"), hr.Aggregate(None, "count", name="count"),
              hr.Aggregate("value", "max", name="max")],
))"""


def data_path(events: int, keys: int) -> Path:
    """The events file of this size (generated once)."""
    path = HERE / "data" / f"stream_{events}_{keys}.parquet"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(13)
    offsets = np.arange(events, dtype=np.int64) * 1_000 + rng.integers(
        -JITTER_MS * 1_000, JITTER_MS * 1_000 + 1, events
    )
    names = pl.Series([f"k{i:05d}" for i in range(keys)])
    frame = pl.DataFrame(
        {
            "key": names.gather(rng.integers(0, keys, events)),
            "ts": pl.Series(offsets + int(BASE.timestamp() * 1e6)).cast(pl.Datetime("us", "UTC")),
            "value": rng.random(events),
        }
    )
    frame.write_parquet(path)
    return path


def make_project(root: Path, views: str, *, disorder: str) -> Path:
    """A project folder with the benchmark pipeline."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / "headrace.toml").write_text(
        '[project]\nname = "stream_bench"\n\n[stream]\ncheckpoint_interval = 1.0\n'
        "max_batch = 200000\n"
    )
    (root / "pipeline.py").write_text(PIPELINE % {"views": views, "disorder": disorder})
    return root


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- children -----------------------------------------------------------------------------


def child_throughput(case: str, events_path: Path, work: Path, out: Path | None) -> dict[str, Any]:
    """Append the events to the log, then time one `stream run --until-end`."""
    if os.environ.get("POLARS_MAX_THREADS") == "1":  # one core: every thread on one CPU
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import headrace as hr
    from headrace.project.streams import open_topic

    views = SLIDING if case == "sliding" else TUMBLING
    root = make_project(work / case, views, disorder="5s")
    frame = pl.read_parquet(events_path)
    with hr.Project.open(root) as project:
        log = open_topic(project, "events")
        for chunk in frame.iter_slices(200_000):
            log.append(chunk, key="key")
        cpu0, wall0 = time.process_time(), time.perf_counter()
        stats = project.run_stream(until_end=True)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        assert stats.events == frame.height, stats
        assert stats.late == 0, stats
        result: dict[str, Any] = {
            "case": case,
            "events": stats.events,
            "emitted": stats.emitted,
            "checkpoints": stats.checkpoints,
            "batches": stats.batches,
            "seconds": round(wall, 3),
            "cpu_seconds": round(cpu, 3),
            "events_per_s": round(stats.events / wall),
            "events_per_cpu_s": round(stats.events / cpu),
            "polars_threads": pl.thread_pool_size(),
            "peak_rss_mib": round(_peak_mib()),
        }
        if out is not None:
            windows = project.datasets.scan(f"{case}__stream").collect()
            windows.select("key", "window_start", "count", "mean", "max").sort(
                "key", "window_start"
            ).write_parquet(out)
    return result


def _produce(log_path: str, rate: float, stop_at: float, counter: Any) -> None:
    """A producer process: events stamped with the wall clock, every 10 ms (``rate`` 0: flat
    out, in batches of 5,000)."""
    from headrace.connectors.log import EmbeddedLog

    log = EmbeddedLog(Path(log_path))
    rng = np.random.default_rng(5)
    keys = pl.Series([f"k{i:05d}" for i in range(10_000)])
    tick = 0.01
    per_tick = max(1, round(rate * tick)) if rate else 5_000
    next_at = time.perf_counter()
    spread = np.linspace(-tick * 1e6, 0, per_tick, endpoint=False).astype(np.int64)
    while time.time() < stop_at:
        now_us = int(time.time() * 1e6)
        batch = pl.DataFrame(
            {
                "key": keys.gather(rng.integers(0, 10_000, per_tick)),
                # each event its own time over the last tick, as events made one by one
                "ts": pl.Series(now_us + spread).cast(pl.Datetime("us", "UTC")),
                "value": rng.random(per_tick),
            }
        )
        log.append(batch, key="key")
        with counter.get_lock():
            counter.value += per_tick
        if rate:
            next_at += tick
            time.sleep(max(0.0, next_at - time.perf_counter()))


def _live(root: Path, rate: float, seconds: float) -> tuple[int, list[np.ndarray]]:
    """Run the job for ``seconds`` while another process produces; (processed, latencies)."""
    import multiprocessing

    import headrace as hr
    from headrace.engines.stream.runtime import StreamOptions
    from headrace.project.stream_job import build_job
    from headrace.project.streams import open_topic

    latencies: list[np.ndarray] = []
    with hr.Project.open(root) as project:
        log = open_topic(project, "events")
        options = StreamOptions(
            checkpoint_interval=1.0, max_seconds=seconds, max_batch=200_000, poll_timeout=0.005
        )
        job = build_job(project, options=options)
        online = job.online
        assert online is not None
        write = online.write

        def timed_write(view: Any, rows: pl.DataFrame) -> None:
            write(view, rows)
            latencies.append(time.time() - rows["ts"].dt.epoch("us").to_numpy() / 1e6)

        online.write = timed_write  # type: ignore[method-assign]
        spawn = multiprocessing.get_context("spawn")
        counter = spawn.Value("q", 0)
        producer = spawn.Process(
            target=_produce, args=(str(log.path), rate, time.time() + seconds, counter)
        )
        producer.start()
        try:
            stats = job.run()
        finally:
            producer.join()
            job.consumer.close()
    return stats.events, latencies


def child_latency(work: Path, seconds: float) -> dict[str, Any]:
    """The sliding view on live events (event time = when produced, a producer process):
    first flat out to find the rate the job sustains, then at half of it for the latencies."""
    root = make_project(work / "latency-max", SLIDING, disorder="0s")
    processed, _ = _live(root, 0.0, min(seconds, 10.0))
    sustained = processed / min(seconds, 10.0)
    record: dict[str, Any] = {"case": "latency", "sustained_rate": round(sustained)}
    for label, share in (("", 2), ("quarter_", 4)):
        root = make_project(work / f"latency{share}", SLIDING, disorder="0s")
        rate = sustained / share
        processed, latencies = _live(root, rate, seconds)
        warm = np.concatenate(latencies[len(latencies) // 10 :]) if latencies else np.array([])
        record |= {
            f"{label}rate": round(rate),
            f"{label}processed": processed,
            f"{label}rows_measured": int(warm.size),
            f"{label}p50_ms": _ms(warm, 50),
            f"{label}p99_ms": _ms(warm, 99),
            f"{label}max_ms": _ms(warm, 100),
        }
    return record


def _ms(latencies: np.ndarray, percentile: float) -> float | None:
    if not latencies.size:
        return None
    return round(float(np.percentile(latencies, percentile)) * 1000, 1)


# -- parent -------------------------------------------------------------------------------


def compare_windows(ours: Path, theirs: Path) -> dict[str, Any]:
    """Identical window outputs? (counts, maxima equal; means within 1e-9 relative)."""
    a = pl.read_parquet(ours).sort("key", "window_start")
    b = pl.read_parquet(theirs).sort("key", "window_start")
    if a.height != b.height:
        return {"identical": False, "why": f"{a.height} windows vs {b.height}"}
    keys_equal = a.select("key", "window_start").equals(b.select("key", "window_start"))
    counts = (a["count"].cast(pl.Int64) == b["count"].cast(pl.Int64)).all()
    maxima = (a["max"] == b["max"]).all()
    rel = ((a["mean"] - b["mean"]).abs() / b["mean"].abs().clip(1e-300)).max()
    same = bool(keys_equal and counts and maxima and rel is not None and float(rel) <= 1e-9)  # type: ignore[arg-type]
    return {"identical": same, "windows": a.height, "max_mean_rel_diff": rel}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--sides", default="headrace,bytewax")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--child", choices=["sliding", "tumbling", "latency"])
    parser.add_argument("--work", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.child:
        if args.child == "latency":
            record = child_latency(args.work, args.latency_seconds)
        else:
            path = data_path(args.events, args.keys)
            record = child_throughput(args.child, path, args.work, args.out)
        print(json.dumps(record))
        return
    if args.smoke:
        args.events, args.sides, args.latency_seconds = 100_000, "headrace", 3.0
    sides = set(args.sides.split(","))
    path = data_path(args.events, args.keys)
    work = Path(tempfile.mkdtemp(prefix="hr-stream-bench-"))
    me = [sys.executable, str(Path(__file__).resolve())]
    common = ["--events", str(args.events), "--keys", str(args.keys), "--work", str(work)]
    logs = work / "logs"
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPU, {platform.platform()}, "
        f"Python {platform.python_version()}",
        "events": args.events,
        "keys": args.keys,
    }
    try:
        print(f"{args.events:,} events, {args.keys:,} keys ({path})", flush=True)
        sliding_all = run_child(
            [*me, "--child", "sliding", *common], log=logs / "s.log", timeout=3600
        )
        os.environ["POLARS_MAX_THREADS"] = "1"
        sliding_one = run_child(
            [*me, "--child", "sliding", *common], log=logs / "s1.log", timeout=3600
        )
        ours_out = work / "tumbling_headrace.parquet"
        tumbling_one = run_child(
            [*me, "--child", "tumbling", *common, "--out", str(ours_out)],
            log=logs / "t1.log",
            timeout=3600,
        )
        os.environ.pop("POLARS_MAX_THREADS")
        results |= {"sliding_all_cores": sliding_all, "sliding_one_core": sliding_one,
                    "tumbling_one_core": tumbling_one}  # fmt: skip
        for label, record in (("sliding, all cores", sliding_all), ("sliding, 1 core", sliding_one),
                              ("tumbling 1m, 1 core", tumbling_one)):  # fmt: skip
            print(f"  headrace {label}: {fmt(record.get('events_per_s'), ',.0f')} events/s "
                  f"({fmt(record.get('events_per_cpu_s'), ',.0f')} per CPU-second), "
                  f"{record.get('error', '')}", flush=True)  # fmt: skip
        latency = run_child(
            [*me, "--child", "latency", "--latency-seconds", str(args.latency_seconds),
             "--work", str(work)],
            log=logs / "latency.log", timeout=600,
        )  # fmt: skip
        results["latency"] = latency
        for label in ("", "quarter_"):
            p50 = fmt(latency.get(f"{label}p50_ms"), ".1f")
            p99 = fmt(latency.get(f"{label}p99_ms"), ".1f")
            rate = latency.get(f"{label}rate") or 0
            print(f"  latency at {rate:,.0f} events/s: p50 {p50} ms, p99 {p99} ms "
                  f"{latency.get('error', '')}", flush=True)  # fmt: skip
        if "bytewax" in sides:
            python = HERE / ".venvs" / "bytewax" / "bin" / "python"
            peer = HERE / "peers" / "stream_bytewax.py"
            for clock in ("default", "fast"):
                theirs = work / f"tumbling_bytewax_{clock}.parquet"
                record = run_child(
                    [str(python), str(peer), "--events", str(path), "--out", str(theirs),
                     "--clock", clock],
                    log=logs / f"bytewax-{clock}.log", timeout=7200,
                )  # fmt: skip
                if "error" not in record and "error" not in tumbling_one:
                    record["comparison"] = compare_windows(ours_out, theirs)
                    record["headrace_ratio"] = round(
                        tumbling_one["events_per_s"] / record["events_per_s"], 1
                    )
                results[f"bytewax_{clock}"] = record
                print(f"  bytewax ({clock} clock): {fmt(record.get('events_per_s'), ',.0f')} "
                      f"events/s; headrace {record.get('headrace_ratio')}x; same windows: "
                      f"{record.get('comparison', {}).get('identical')} {record.get('error', '')}",
                      flush=True)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not args.smoke:
        out = HERE / "results" / f"stream-{datetime.now(UTC):%Y-%m-%d}.json"
        out.write_text(json.dumps(results, indent=2, default=str))
        print(f"results: {out}")
    failed = [k for k, v in results.items() if isinstance(v, dict) and "error" in v]
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
