"""Two worker processes share a topic's partitions; state moves through the checkpoint store."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from _clicks import VIEWS, assert_same_rows, batch_clean, batch_view, events, make_project, produce

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
