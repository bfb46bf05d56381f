"""Two worker processes share a topic's partitions; state moves through the checkpoint store."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _clicks import VIEWS, assert_same_rows, batch_clean, batch_view, events, make_project, produce

import headrace as hr
from headrace.engines.stream.runtime import StreamJob, StreamOptions
from headrace.errors import StreamError
from headrace.project.stream_job import build_job

HEADRACE = Path(sys.executable).parent / "headrace"


def _worker(root: Path, log: Path) -> subprocess.Popen[bytes]:
    command = [
        str(HEADRACE),
        "--project",
        str(root),
        "stream",
        "run",
        "--group",
        "--until-end",
        "--checkpoint-interval",
        "0.05",
        "--max-batch",
        "200",
        "--format",
        "json",
    ]
    with log.open("wb") as err:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err)


def test_a_second_worker_takes_over_half_the_partitions_with_their_state(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    data = events(40_000, seed=5)
    produce(project, data)
    first = _worker(project.root, tmp_path / "first.log")
    time.sleep(4.0)  # the first worker is running alone (the CLI starts in ~2 s)
    assert first.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
    second = _worker(project.root, tmp_path / "second.log")
    outs = []
    for worker, name in ((first, "first"), (second, "second")):
        stdout, _ = worker.communicate(timeout=240)
        assert worker.returncode == 0, (tmp_path / f"{name}.log").read_text()[-2000:]
        outs.append(json.loads(stdout))
    assert outs[0]["events"] > 0
    assert outs[1]["events"] > 0, "the second worker never got a partition"
    assert outs[0]["events"] + outs[1]["events"] == data.height

    stored = project.datasets.scan("events_raw__events").collect()
    assert stored.height == data.height
    assert stored.select("_stream_partition", "_stream_offset").n_unique() == data.height
    clean = batch_clean(data)
    views = project.pipeline().feature_views
    for name in VIEWS:
        streamed = project.datasets.scan(f"{name}__stream").collect()
        assert_same_rows(views[name], batch_view(views[name], clean), streamed)


KIND_VIEW = """
pipeline.features(hr.FeatureView(
    "kind_counts", entity=hr.Entity("kind", ["kind"]), source="events_clean", event_time="ts",
    ttl="1d", features=[hr.Aggregate(None, "count", "1m", name="n")],
))
"""


def test_workers_refuse_to_split_a_view_not_keyed_by_the_stream_key(tmp_path: Path) -> None:
    """Events are routed by user; a view per kind cannot be split over workers."""
    project = make_project(tmp_path / "p")
    with (project.root / "pipeline.py").open("a") as file:
        file.write(KIND_VIEW)
    project = hr.Project.open(project.root)
    produce(project, events(2_000, seed=3))

    def worker(member: str, views: tuple[str, ...] = ()) -> StreamJob:
        options = StreamOptions(group=True, member=member, checkpoint_interval=0.05)
        return build_job(project, views=views, options=options)

    first = worker("a")
    first._join()  # alone: every partition, every view is fine
    assert first.owned == sorted(first.consumer.partitions())
    second = worker("b")
    second._join()  # the first still owns everything: nothing to take yet
    with pytest.raises(StreamError, match=r"'kind_counts' \(entity \['kind'\]\).*by key 'user'"):
        first._rebalance()  # hands half over: now it would see a part of each kind
    with pytest.raises(StreamError, match=r"another worker joined.*run one worker"):
        second._rebalance()
    keyed = worker("c", views=("user_recent",))
    keyed._join()
    keyed._rebalance()  # views keyed by the stream key split fine
