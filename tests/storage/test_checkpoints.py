"""``CheckpointStore.reset``: a job's checkpoints, intents and state forgotten in one go."""

from __future__ import annotations

from datetime import timedelta

import pytest

from headrace.errors import StreamError
from headrace.storage.checkpoints import CheckpointStore
from headrace.storage.metadata import MetadataStore

JOB = "clicks/clicks"


def saved(store: MetadataStore) -> CheckpointStore:
    """Checkpoint 1 of partitions 0-2 of JOB (state rows in 0 and 1), an intent for 2, and
    a checkpoint of another job."""
    checkpoints = CheckpointStore(store)
    added = [(0, "v", 1, b"a"), (1, "v", 1, b"b")]
    checkpoints.save(JOB, 1, {p: (10 * p, b"") for p in range(3)}, added=added)
    checkpoints.intend(JOB, 2, {2: 25})
    checkpoints.save("other/clicks", 1, {0: (5, b"")})
    return checkpoints


def test_reset_forgets_the_chosen_partitions_only(store: MetadataStore) -> None:
    checkpoints = saved(store)
    assert checkpoints.reset(JOB, [1, 2, 7]) == [1, 2]
    assert checkpoints.load(JOB, range(3)).keys() == {0}
    assert checkpoints.state_rows(JOB, range(3)).keys() == {0}
    assert checkpoints.intents(JOB, range(3)) == {}

    assert checkpoints.reset(JOB) == [0]
    assert checkpoints.load(JOB, range(3)) == {}
    assert checkpoints.state_rows(JOB, range(3)) == {}
    assert checkpoints.reset(JOB) == []
    assert checkpoints.load("other/clicks", [0]) == {0: (1, 5, b"")}


def test_reset_refuses_while_a_live_member_holds_partitions(store: MetadataStore) -> None:
    checkpoints = saved(store)
    live = checkpoints.heartbeat(JOB, "worker-1", expiry=timedelta(minutes=1))
    assert checkpoints.claim(JOB, "worker-1", [1], live) == [1]
    with pytest.raises(StreamError, match=r"partitions 1 \(worker-1\); stop its workers first"):
        checkpoints.reset(JOB, [0])
    assert checkpoints.load(JOB, range(3)).keys() == {0, 1, 2}

    assert checkpoints.reset(JOB, expiry=timedelta(0)) == [0, 1, 2]  # its heartbeat expired
