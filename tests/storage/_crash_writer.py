"""Write big versions of dataset ``crash`` forever, until killed (used by the kill -9 test).

Usage: ``python _crash_writer.py ROOT FIRST_BATCH``. Write number ``b`` (FIRST_BATCH, FIRST_BATCH+1,
...) replaces the whole dataset with ``rows_of(b)`` rows whose ``batch`` column is ``b``, so a
reader can tell exactly which write a version came from and whether it is complete. Prints
``ready`` once warmed up and ``committed VERSION BATCH`` after each write returns.
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

from headrace.storage.datasets import DatasetStore

BASE_ROWS = 3_000_000
DATASET = "crash"


def rows_of(batch: int) -> int:
    """Row count of write number ``batch``: distinct per write, so a mix-up shows."""
    return BASE_ROWS + batch


def frame_of(batch: int) -> pl.DataFrame:
    """Write ``batch``'s rows: an incompressible payload makes the write take a while."""
    index = pl.int_range(rows_of(batch), dtype=pl.Int64, eager=True)
    return pl.DataFrame(
        {
            "batch": pl.repeat(batch, rows_of(batch), dtype=pl.Int64, eager=True),
            "i": index,
            "payload": index.hash(seed=batch).cast(pl.Float64),
            "text": index.hash(seed=batch + 1).cast(pl.String),
        }
    )


def main(root: Path, first_batch: int) -> None:
    store = DatasetStore(root)
    batch = first_batch
    frame = frame_of(batch)
    print("ready", flush=True)
    while True:
        result = store.write(DATASET, frame, commit_metadata={"headrace.batch": str(batch)})
        print(f"committed {result.version} {batch}", flush=True)
        batch += 1
        frame = frame_of(batch)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
