"""kill -9 the streaming worker at random points, many times: the stores end up exactly as
after an uninterrupted run (online store and offline log), with nothing duplicated or lost."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _clicks import VIEWS, assert_same_rows, events, make_project, produce

from headrace.storage.online.base import OnlineTable, encode_key

HEADRACE = Path(sys.executable).parent / "headrace"
KILLS = 10


def _worker(root: Path, log: Path) -> subprocess.Popen[bytes]:
    command = [
        str(HEADRACE),
        "--project",
        str(root),
        "stream",
        "run",
        "--until-end",
        "--checkpoint-interval",
        "0.02",
        "--max-batch",
        "300",
        "--format",
        "json",
    ]
    with log.open("wb") as err:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)


def _online(project: object, view: str) -> dict[str, tuple[object, ...]]:
    features = project.features  # type: ignore[attr-defined]
    definition = project.pipeline().feature_views[view]  # type: ignore[attr-defined]
    version = features.registry.register_view(definition).version
    names = definition.feature_names
    table = OnlineTable(view, version, names, ("float",) * len(names))
    users = [f"u{i:03d}" for i in range(200)]  # every user of _clicks.events
    entries = features.online_store.read(table, [encode_key([u]) for u in users])
    return {u: (e.event_us, e.values) for u, e in zip(users, entries, strict=True) if e}


def _assert_same_entries(
    got: dict[str, tuple[object, ...]], want: dict[str, tuple[object, ...]]
) -> None:
    """Same keys, event times and values (floats within 1e-9 relative: summation order)."""
    assert got.keys() == want.keys()
    for key, (event_us, values) in want.items():
        got_us, got_values = got[key]
        assert got_us == event_us, key
        for mine, theirs in zip(got_values, values, strict=True):  # type: ignore[call-overload]
            if isinstance(theirs, float) and isinstance(mine, float):
                assert mine == pytest.approx(theirs, rel=1e-9, abs=1e-12), key
            else:
                assert mine == theirs, key


def test_kill_9_at_random_points_changes_nothing(tmp_path: Path) -> None:
    data = events(40_000, seed=11)
    reference = make_project(tmp_path / "reference")
    crashed = make_project(tmp_path / "crashed")
    produce(reference, data)
    produce(crashed, data)
    done = subprocess.run(
        [str(HEADRACE), "--project", str(reference.root), "stream", "run", "--until-end"],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]

    rng = random.Random(3)
    kills = 0
    while True:
        log = tmp_path / f"worker-{kills}.log"
        worker = _worker(crashed.root, log)
        time.sleep(rng.uniform(2.0, 4.5))  # starting the CLI takes ~2 s of this
        if worker.poll() is not None:
            assert worker.returncode == 0, log.read_text()[-2000:]
            break
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        kills += 1
        if kills >= KILLS:
            finish = subprocess.run(
                [str(HEADRACE), "--project", str(crashed.root), "stream", "run", "--until-end"],
                capture_output=True,
                check=False,
            )
            assert finish.returncode == 0, finish.stderr.decode()[-2000:]
            break
    assert kills >= 5, "the worker finished before it could be killed often enough"

    events_out = crashed.datasets.scan("events_raw__events").collect()
    assert events_out.height == data.height
    assert events_out.select("_stream_partition", "_stream_offset").n_unique() == data.height
    views = crashed.pipeline().feature_views
    for name in VIEWS:
        expected = reference.datasets.scan(f"{name}__stream").collect()
        actual = crashed.datasets.scan(f"{name}__stream").collect()
        assert_same_rows(views[name], expected, actual)
        _assert_same_entries(_online(crashed, name), _online(reference, name))
    quarantine = [p.datasets.exists("events_raw__quarantine") for p in (reference, crashed)]
    assert quarantine[0] == quarantine[1]
